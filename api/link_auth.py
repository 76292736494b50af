"""What a browser loads by URL opens with a signed link token, never with an API key.

`<img src>`, `<video src>`, EventSource and WebSocket can't send headers. Output and thumbnail
URLs in job responses carry `?token=` for that one file (`core.links.output_link`); streams
take a token from `POST /v1/stream-tokens`. Every link answers 401 when its token is wrong for
the resource or expired, with a message that says which.

A stream token opens its user's topics with the rights of the API key that made it, looked up
when the stream opens: an admin's key makes an admin's token, a user's key can't, and a token
of a revoked key is refused like the key.
"""

from __future__ import annotations

import time

from fastapi import HTTPException, status

from api.auth import Caller, KeyRejected, KeyRevoked, KeyRing
from api.deps import BearerCredentials, caller_of
from core.links import split_stream_token, stream_scope
from core.settings import Settings
from core.tokens import link_token_valid


class LinkRejected(Exception):
    """A link token that doesn't open this resource (now); `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_link(
    secret: bytes, scope: str, token: str, *, renew: str, now: float | None = None
) -> None:
    """Nothing if `token` opens `scope` now; LinkRejected (expired, or not for this) if not.

    `renew` tells the client where a fresh link comes from.
    """
    now = time.time() if now is None else now
    if link_token_valid(secret, scope, token, now):
        return
    # Signed for this scope, only too old: worth telling apart (fetch the job again).
    if link_token_valid(secret, scope, token, 0):
        raise LinkRejected("link_expired", f"this link has expired: {renew}")
    raise LinkRejected("invalid_link_token", "this link's token is not valid for this resource")


async def link_or_key(
    keyring: KeyRing,
    settings: Settings,
    credentials: BearerCredentials,
    token: str | None,
    scope: str,
) -> Caller | None:
    """The caller of the header's key when there is a header (it wins, as on the streams);
    else None when `token` opens `scope`, whoever owns it."""
    if credentials is not None or token is None:
        return await caller_of(keyring, credentials)
    try:
        check_link(
            settings.signing_secret(),
            scope,
            token,
            renew="read the job again for a fresh link",
        )
    except LinkRejected as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, {"code": exc.code, "message": exc.message}
        ) from None
    return None


async def stream_caller(
    keyring: KeyRing, secret: bytes, token: str, now: float | None = None
) -> Caller:
    """The caller a stream token stands for; KeyRejected or LinkRejected if it is refused."""
    key_id, link = split_stream_token(token)
    try:
        caller = await keyring.caller_by_id(key_id)
    except KeyRevoked:
        raise
    except KeyRejected:
        raise LinkRejected("invalid_link_token", "this stream token is not valid") from None
    check_link(
        secret,
        stream_scope(caller.user_id, key_id),
        link,
        renew="POST /v1/stream-tokens for a new token",
        now=now,
    )
    return caller
