"""Refuse text that no database column can hold, before any route reads it: a NUL character
(PostgreSQL text and JSON refuse it) or a lone UTF-16 surrogate (`"\\ud800"` parses as JSON but
has no UTF-8 form), in the URL or anywhere in a JSON body, keys included. Deep in a query or
an insert they were 500s; here they are a 422 that says where.

`/webhooks/*` bodies are left to their routes: they are signed bytes from a provider.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

WEBHOOK_PREFIX = "/webhooks/"
Loc = list[str | int]


def unstorable(text: str) -> str | None:
    """Why `text` can't be stored, or None."""
    if "\x00" in text:
        return "holds a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def find_unstorable(document: Any) -> tuple[Loc, str] | None:
    """The first string (or key) of a parsed JSON document that can't be stored, with its
    location. Iterative: a deeply nested document can't exhaust the stack."""
    stack: list[tuple[Loc, Any]] = [([], document)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            why = unstorable(value)
            if why is not None:
                return loc, why
        elif isinstance(value, dict):
            for key, item in value.items():
                why = unstorable(key)
                if why is not None:
                    return [*loc, key.encode("unicode_escape").decode("ascii")], f"key {why}"
                stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in enumerate(value))
    return None


def _refuse(loc: Loc, why: str) -> JSONResponse:
    where = ".".join(str(part) for part in loc)
    message = f"{where}: text {why}: it cannot be stored"
    fields = [{"loc": loc, "msg": f"text {why}", "type": "unstorable_text"}]
    return error_response(422, message, details={"fields": fields})


def _is_json(scope: Scope) -> bool:
    raw: bytes = dict(scope["headers"]).get(b"content-type", b"")
    content_type = raw.split(b";")[0].strip().lower()
    # FastAPI reads a body without a Content-Type as JSON too
    return (
        not content_type or content_type == b"application/json" or content_type.endswith(b"+json")
    )


class UnstorableText:
    """422 for a request whose URL or JSON body holds text that can't be stored."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The server has percent-decoded the path; the query string is still raw bytes.
        if "\x00" in scope["path"]:
            await _refuse(["path"], "holds a NUL character (%00)")(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            await _refuse(["query"], "holds a NUL character (%00)")(scope, receive, send)
            return
        if scope["path"].startswith(WEBHOOK_PREFIX) or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(b"", receive, first=message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None  # not JSON: the route answers that
        found = find_unstorable(document)
        if found is not None:
            await _refuse(["body", *found[0]], found[1])(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """A `receive` that gives the body read already, then whatever the client sends next."""
    pending: Message | None = first or {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay
