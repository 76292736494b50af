"""The worker's transport to the providers: creates go out on connections of their own.

A connection kept alive in the pool can be closed by the provider's side (its idle timeout)
just as a request is written to it: the request is then lost, unread, with "server
disconnected without sending a response", which can't be told apart from a provider that took
the request and died before answering. For a create that ambiguity costs a job a long wait
(fal and KIE can't be asked what exists), so creates (requests carrying a SendGate) open a new
connection each time; every other call reuses the pool.
"""

from __future__ import annotations

import httpx

from providers.base import FRESH_CONNECTION


class FreshConnectionsForCreates(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._pooled = httpx.AsyncHTTPTransport(limits=limits)
        self._fresh = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=limits.max_connections, max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._fresh if request.extensions.get(FRESH_CONNECTION) else self._pooled
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._pooled.aclose()
        await self._fresh.aclose()
