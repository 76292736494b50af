"""Turn an HTTP answer from a provider into the provider error that says how to retry it."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import orjson

from providers.base import ProviderRateLimited, ProviderRejected, ProviderUnavailable

DEFAULT_RETRY_AFTER = 5.0
# Error statuses that are not the provider's verdict on the request: it may have been done.
NO_VERDICT = frozenset({408, 504})


def retry_after_seconds(response: httpx.Response, body: Any) -> float:
    """Seconds to wait after a 429: the body's `retry_after`, else the `Retry-After` header."""
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(header)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return DEFAULT_RETRY_AFTER


def _message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "msg", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.text[:500] or response.reason_phrase


def raise_for_status(response: httpx.Response) -> Any:
    """Return the decoded JSON body of a 2xx answer, or raise the matching provider error."""
    try:
        body: Any = orjson.loads(response.content)
    except ValueError:
        body = None
    if response.is_success:
        if body is None:
            raise ProviderUnavailable(f"{response.request.url}: answer is not JSON")
        return body
    message = _message(body, response)
    if response.status_code == 429:
        raise ProviderRateLimited(retry_after_seconds(response, body), message)
    if response.status_code >= 500 or response.status_code in (408, 409):
        raise ProviderUnavailable(
            f"{response.status_code} from provider: {message}",
            # A timeout answer (ours or a gateway's) says nothing about whether it was done.
            answered=response.status_code not in NO_VERDICT,
        )
    raise ProviderRejected(message, response.status_code)
