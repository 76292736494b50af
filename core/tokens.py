"""Signed tokens: the per-job token of a webhook URL, and short-lived links scoped to one thing.

Both are HMAC-SHA256 under SECRET_KEY (`Settings.signing_secret()`), so any API or worker with
the secret can make and check them and nothing needs storing. A webhook token proves that a
webhook URL is one we handed out for that job (a provider's signature proves who sent an event,
not which of our jobs it is for). A link token opens one resource (an output, a thumbnail, one
user's event stream) until it expires; API keys never travel in URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math

# Link expiries are rounded up to this grain, so the same link is handed out for a while and
# browsers can cache what it points at.
LINK_GRAIN_SECONDS = 300


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def webhook_token(secret: bytes, job_id: str) -> str:
    return _mac(secret, f"webhook:{job_id}")


def webhook_token_valid(secret: bytes, job_id: str, token: str | None) -> bool:
    # compare_digest takes ASCII text only (anything else raises): refuse the rest first.
    return (
        token is not None
        and token.isascii()
        and hmac.compare_digest(webhook_token(secret, job_id), token)
    )


def link_expiry(now: float, ttl_seconds: int) -> int:
    """When a link made at `now` expires: at least `ttl_seconds` later, rounded up."""
    return int(math.ceil((now + ttl_seconds) / LINK_GRAIN_SECONDS) * LINK_GRAIN_SECONDS)


def link_token(secret: bytes, scope: str, expires_at: int) -> str:
    """`{expires_at}.{mac}`: opens `scope` (e.g. "output:{job_id}:0") until `expires_at`."""
    return f"{expires_at}.{_mac(secret, f'link:{scope}:{expires_at}')}"


def link_token_valid(secret: bytes, scope: str, token: str | None, now: float) -> bool:
    if not token or not token.isascii():
        return False  # compare_digest takes ASCII text only
    expires, _, mac = token.partition(".")
    # Bounded: int() refuses very long digit strings (and a real expiry has 10 digits).
    if not expires.isdigit() or len(expires) > 12 or int(expires) < now:
        return False
    return hmac.compare_digest(_mac(secret, f"link:{scope}:{int(expires)}"), mac)
