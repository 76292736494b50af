"""Pieces every provider emulator's app shares: its webhook client and its response counting."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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
