"""Webhook URLs of the e2e stack, made the way the API makes them (with the job's token)."""

from __future__ import annotations

from urllib.parse import urlencode

from core.tokens import webhook_token
from tests.e2e.conftest import E2E

VALID = "valid"


def hook_url(e2e: E2E, provider: str, job_id: str, token: str | None = VALID) -> str:
    """The webhook URL we hand the provider; `token` VALID is the job's own, None none."""
    params = {"job_id": job_id}
    if token == VALID:
        params["token"] = webhook_token(e2e.stack.secret_key().encode(), job_id)
    elif token is not None:
        params["token"] = token
    return f"/webhooks/{provider}?{urlencode(params)}"
