"""Pieces every provider emulator's app shares: its webhook client and its response counting."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI, Request, Response


def webhook_client(timeout: float) -> httpx.AsyncClient:
    """The client that delivers webhooks: no redirects (providers don't follow them) and no
    proxies from the environment, so deliveries go straight to the receiver, usually on
    loopback."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)


def count_responses(
    app: FastAPI,
    kind_of: Callable[[Request], str | None],
    record: Callable[[Request, str, int], None],
    *,
    log: logging.Logger,
    log_requests: bool,
) -> None:
    """Count each answer by the kind of request it was (`kind_of`), and log it if asked."""

    @app.middleware("http")
    async def _count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        kind = kind_of(request)
        if kind is not None:
            record(request, kind, response.status_code)
        if log_requests:
            log.info("%s %s -> %s", request.method, request.url.path, response.status_code)
        return response


@dataclass(frozen=True)
class ProviderJob:
    """One provider job as `GET /_emulator/jobs` shows it."""

    id: str
    callback_url: str | None  # the webhook / callback URL it was created with
    status: str  # in the provider's own words
    canceled: bool  # ended by a cancel (the provider's status may not say so, as at fal)


def our_job_id(callback_url: str | None) -> str | None:
    """The `job_id=` query parameter of a webhook URL: the app's job the provider job is for."""
    if not callback_url:
        return None
    values = parse_qs(urlsplit(callback_url).query).get("job_id")
    return values[0] if values else None


def provider_jobs(jobs: Iterable[ProviderJob], job_id: str | None) -> dict[str, Any]:
    """The body of `GET /_emulator/jobs[?job_id=…]`: provider jobs per app job id, oldest first.

    Only jobs whose callback URL carries a `job_id=`; a ledger checks each app job has exactly
    one (and counts cancelled extras apart).
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        ours = our_job_id(job.callback_url)
        if ours is not None:
            item = {"id": job.id, "status": job.status, "canceled": job.canceled}
            by_job.setdefault(ours, []).append(item)
    if job_id is not None:
        return {"job_id": job_id, "provider_jobs": by_job.get(job_id, [])}
    return {"jobs": by_job}
