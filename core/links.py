"""Links for browsers and providers: the API's URL of a stored file, opened by a signed token,
and where a workflow is in the Temporal web UI.

`{PUBLIC_BASE_URL}/v1/jobs/{job_id}/outputs/{n}?token=…` (and `…/thumbnail?token=…`) opens that
one file until the token expires; `?token=` on the event stream (`stream_token`) opens one
user's topics with the rights of the API key it was made with. The scopes are the strings
signed by `core.tokens.link_token`.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote, urlsplit

from core.ids import JOB_ID
from core.settings import Settings
from core.tokens import link_expiry, link_token

_OUTPUT_PATH = re.compile(rf"^/v1/jobs/({JOB_ID})/outputs/(\d{{1,4}})/?$")


def output_scope(job_id: str, index: int, *, thumbnail: bool = False) -> str:
    return f"{'thumbnail' if thumbnail else 'output'}:{job_id}:{index}"


def stream_scope(user_id: str, key_id: str) -> str:
    """One user's event stream, with the rights of API key `key_id` (looked up when used)."""
    return f"stream:{user_id}:{key_id}"


def stream_token(
    secret: bytes, user_id: str, key_id: str, *, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    """(`{key_id}.{link token}`, its expiry): the key's id travels so the server can find the
    user and refuse the token once the key is revoked."""
    expires = link_expiry(time.time() if now is None else now, ttl_seconds)
    return f"{key_id}.{link_token(secret, stream_scope(user_id, key_id), expires)}", expires


def split_stream_token(token: str) -> tuple[str, str]:
    """(key id, link token) of a stream token; the parts are checked by whoever uses them."""
    key_id, _, link = token.partition(".")
    return key_id, link


def output_link(
    base_url: str,
    secret: bytes,
    job_id: str,
    index: int,
    *,
    ttl_seconds: int,
    thumbnail: bool = False,
    now: float | None = None,
) -> str:
    """The signed URL of output `index` of `job_id` (or of its thumbnail)."""
    expires = link_expiry(time.time() if now is None else now, ttl_seconds)
    token = link_token(secret, output_scope(job_id, index, thumbnail=thumbnail), expires)
    path = f"/v1/jobs/{job_id}/outputs/{index}" + ("/thumbnail" if thumbnail else "")
    return f"{base_url.rstrip('/')}{path}?token={token}"


def own_output(url: str, base_url: str) -> tuple[str, int] | None:
    """(job_id, index) when `url` names one of our stored outputs under `base_url`, else None."""
    parts, base = urlsplit(url), urlsplit(base_url)
    if (parts.scheme, parts.netloc.lower()) != (base.scheme, base.netloc.lower()):
        return None
    path = parts.path
    prefix = base.path.rstrip("/")
    if prefix:
        if not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix) :]
    match = _OUTPUT_PATH.match(path)
    return (match.group(1), int(match.group(2))) if match else None


def workflow_url(settings: Settings, workflow_id: str) -> str | None:
    """The workflow's page in the Temporal web UI; None when no UI is configured."""
    ui = settings.temporal_ui_url.rstrip("/")
    if not ui:
        return None
    return f"{ui}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
