"""The provider interface: one small class per inference provider, found through the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from core.contracts import ProviderRef, ProviderSnapshot, SubmitRequest


class ProviderError(Exception):
    """Base of the errors a provider client raises; activities map them to retry decisions."""


class ProviderRejected(ProviderError):
    """The provider refused the request (bad input, unknown model, auth): retrying won't help."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProviderRateLimited(ProviderError):
    """429: wait `retry_after` seconds before the next attempt."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message} (retry after {retry_after:g}s)")
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx or a malformed answer: retried by the activity retry policy.

    `answered`: the provider answered with an error status (it refused the request) rather
    than leaving us without an answer (a gateway timeout, a 2xx we can't read). For a provider
    whose jobs can't be looked up, a create refused this way made no job; one without an answer
    may have.
    """

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or body is not acceptable (answered 401)."""


class WebhookUnavailable(Exception):
    """A webhook that can't be checked right now (answered 503, so the provider sends it again)."""


# A request extension asking for a connection of its own (see providers.transport).
FRESH_CONNECTION = "autosync.fresh_connection"


class SendGate:
    """Runs `on_send` once, just before a request's first byte leaves for the provider.

    A create is counted in the database as it is sent, not before the call: the connection,
    the TLS handshake and a wait for a pooled connection all come first, so a worker killed
    during any of them leaves no counted attempt (nothing was sent: the retry simply sends).
    Only a kill in the instant between the count and the write leaves an attempt that is
    counted but was never sent. If `on_send` raises, nothing is sent and the error is the
    request's. httpcore awaits its `trace` extension inline, which is what makes this exact;
    a transport without that hook (a test's mock) never opens the gate: `fired` stays False.
    """

    def __init__(self, on_send: Callable[[], Awaitable[None]]) -> None:
        self._on_send = on_send
        self.fired = False

    @property
    def extensions(self) -> dict[str, Any]:
        return {"trace": self._trace, FRESH_CONNECTION: True}

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        # http11.send_request_headers.started, http2.send_request_headers.started
        if not self.fired and event.endswith(".send_request_headers.started"):
            await self._on_send()
            self.fired = True


def gate_extensions(gate: SendGate | None) -> dict[str, Any] | None:
    return gate.extensions if gate is not None else None


class Provider(Protocol):
    name: str
    # Whether `find` can look up the provider jobs an earlier submit created (Replicate lists
    # them). Without it (fal, KIE) a submit whose answer was lost can't be retried safely.
    lookup: bool

    async def submit(
        self, request: SubmitRequest, *, gate: SendGate | None = None
    ) -> ProviderSnapshot:
        """Create the provider job; the create request carries `gate` (see SendGate)."""
        ...

    async def find(
        self, request: SubmitRequest, *, since: datetime | None = None
    ) -> list[ProviderSnapshot]:
        """Provider jobs an earlier `submit` of this request may have created, oldest first.

        Asked before a submit is tried again after an attempt whose answer was lost, so a
        provider job we created is adopted rather than created twice. `since`: when our job
        was created (nothing older can be ours). A provider with no way to look its jobs up
        answers [].
        """
        ...

    async def get(self, ref: ProviderRef) -> ProviderSnapshot: ...

    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot: ...


@dataclass
class BulkAnswer:
    """What one bulk read learned: snapshots by provider job id, and the calls it cost."""

    found: dict[str, ProviderSnapshot] = field(default_factory=dict)
    calls: int = 0


@runtime_checkable
class BulkStatus(Protocol):
    """A provider that can read many of its jobs per call (Replicate's list, 100 a page)."""

    async def get_many(
        self, refs: Sequence[ProviderRef], *, since: datetime | None, max_pages: int
    ) -> BulkAnswer:
        """Snapshots of the jobs of `refs` found within `max_pages` pages per collection,
        reading no further back than `since` (the oldest job's creation). Jobs not found are
        left out: the caller reads them one by one."""
        ...


@runtime_checkable
class UsageReader(Protocol):
    """A provider whose terminal webhook lacks its accounting (fal's carries only the output):
    the store activity reads it once before recording the job's cost."""

    async def usage(self, ref: ProviderRef) -> dict[str, Any]:
        """The provider's accounting of a finished job (`ProviderSnapshot.usage`); {} if none."""
        ...


class WebhookVerifier(Protocol):
    """The API side of a provider: check a webhook and turn it into a snapshot."""

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Raise WebhookRejected unless authentic (WebhookUnavailable if that can't be told
        now); return the webhook's message id if any."""
        ...

    def parse(self, body: bytes) -> ProviderSnapshot: ...
