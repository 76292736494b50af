"""One error shape for every HTTP error the API answers:
`{"error": {"code": "snake_case", "message": "for a human", "details": {...}}}`.

Routes keep raising `HTTPException(status, "message")` or
`HTTPException(status, {"code": ..., "message": ..., **details})`; the handlers installed here turn
those, request validation errors and anything unhandled into that shape. WebSocket close
reasons are plain text and stay so.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.starts import RETRY_AFTER_SECONDS, is_temporal_error, is_unavailable

log = logging.getLogger(__name__)

CODES_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}
# A summary of a thousand validation errors helps nobody; `details.fields` keeps them all.
MAX_SUMMARIZED_FIELDS = 10
INTERNAL_MESSAGE = "internal error: it has been logged; try again or report it"


class ErrorInfo(BaseModel):
    code: str = Field(description="stable, snake_case: what went wrong, for programs")
    message: str = Field(description="what went wrong and what to do, for people")
    details: dict[str, Any] = Field(
        description="more about it: `fields` (validation errors: loc, msg, type) or other keys"
    )


class Error(BaseModel):
    """The body of every error response (status 4xx and 5xx)."""

    error: ErrorInfo


ERRORS_DESCRIPTION = (
    "Every error answer (4xx, 5xx) has one JSON shape: "
    '`{"error": {"code": "not_found", "message": "job … not found", "details": {}}}`; '
    "`code` is stable snake_case, `message` is for people, and a validation error (422, "
    "`validation_error`) lists each problem in `details.fields` as `{loc, msg, type}`."
)


def code_for(status_code: int) -> str:
    known = CODES_BY_STATUS.get(status_code)
    if known is not None:
        return known
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "client_error" if status_code < 500 else "server_error"


def error_response(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error response; for code that answers without raising (middlewares)."""
    body = {"code": code or code_for(status_code), "message": message,
            "details": jsonable_encoder(details or {})}  # fmt: skip
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


ORCHESTRATOR_DOWN = "the orchestrator is unavailable; try again"


def orchestrator_unavailable(message: str = ORCHESTRATOR_DOWN, **recorded: str) -> HTTPException:
    """Temporal is down, unreachable or not answering: a 503 with Retry-After.

    `recorded` names what the request recorded before it could not go on (`job_id`,
    `run_id`): the answer's code is then `orchestrator_unavailable`, with those ids in its
    details; without, it is the plain 503 (`unavailable`).
    """
    detail: str | dict[str, str] = (
        {"code": "orchestrator_unavailable", "message": message, **recorded}
        if recorded
        else message
    )
    return HTTPException(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


@asynccontextmanager
async def temporal_errors_as_503() -> AsyncIterator[None]:
    """Temporal's errors in the block, as `orchestrator_unavailable()`; others go on."""
    try:
        yield
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        raise orchestrator_unavailable() from exc


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "error"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code < 200 or exc.status_code in (204, 205, 304):
        return Response(status_code=exc.status_code, headers=headers)  # no body allowed
    detail: Any = exc.detail
    if isinstance(detail, dict):
        extra = dict(detail)
        code = extra.pop("code", None)
        message = extra.pop("message", None)
        return error_response(
            exc.status_code,
            str(message) if message is not None else _phrase(exc.status_code),
            code=str(code) if code else None,
            details=extra,
            headers=headers,
        )
    if isinstance(detail, str):
        return error_response(exc.status_code, detail, headers=headers)
    return error_response(
        exc.status_code, _phrase(exc.status_code), details={"detail": detail}, headers=headers
    )


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_summary(fields: Sequence[dict[str, Any]]) -> str:
    """`body.input.prompt: Field required; query.limit: …` (pydantic's "Value error, " cut)."""
    parts = []
    for field in fields[:MAX_SUMMARIZED_FIELDS]:
        msg = str(field.get("msg", "")).removeprefix("Value error, ")
        where = _where(field.get("loc", ()))
        parts.append(f"{where}: {msg}" if where else msg)
    if len(fields) > MAX_SUMMARIZED_FIELDS:
        parts.append(f"and {len(fields) - MAX_SUMMARIZED_FIELDS} more")
    return "; ".join(parts) or "the request is not valid"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only where and why: `input` and `ctx` may echo a megabyte of body or hold objects.
    fields = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return error_response(422, validation_summary(fields), details={"fields": fields})


def database_unavailable(exc: BaseException) -> bool:
    """The app DB is down, unreachable, locked or out of connections: worth a retry, not a 500."""
    return isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.TimeoutError,
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "the database is unavailable; try again",
            code="database_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if is_temporal_error(exc) and is_unavailable(exc):
        # Temporal down or not answering, on a path that did not expect it: still a 503.
        log.warning("orchestrator unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            ORCHESTRATOR_DOWN,
            code="orchestrator_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    # The client learns nothing of the cause (paths, SQL, hosts); the log has it all.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
    _document_errors(app)


def _document_errors(app: FastAPI) -> None:
    """OpenAPI: `Error` as a component, the response of every 4XX/5XX and of FastAPI's 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)  # FastAPI's own, which it caches: amended once, here
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["Error"] = error_schema
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = {"description": "Validation Error", "content": content}
                responses.setdefault("4XX", {"description": "Client error", "content": content})
                responses.setdefault("5XX", {"description": "Server error", "content": content})
        for unused in ("HTTPValidationError", "ValidationError"):
            if f"#/components/schemas/{unused}" not in repr(schema):
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
