"""Starting and signalling a workflow while Temporal may be down, and telling what happened.

A start can end three ways that matter to whoever wrote a row for it first:

- it certainly runs (started now, or it existed already: `WorkflowAlreadyStartedError`);
- it certainly does not: Temporal refused it, or was never reached (the connection was
  refused, so the request never left);
- nobody knows: the request may have reached Temporal and the answer was lost (deadline
  passed, connection reset). Then the workflow is described before anyone marks the row
  failed: a workflow that exists is fine; one that can't be asked about is `UNKNOWN`.

A signal either reaches a running workflow, finds none (`signal_workflow` says False: it never
started, or it ended), or can't be sent now (`Unreachable`).

Used by the API (jobs, sync runs) and the recovery sweep; no `api` imports here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

# What a 503 tells the client to wait before trying again (`Retry-After`, seconds).
RETRY_AFTER_SECONDS = 5

# The request may have reached the server: only a describe can tell whether it took effect.
AMBIGUOUS_STATUSES = frozenset(
    {
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.ABORTED,
    }
)


class StartOutcome(StrEnum):
    STARTED = "started"  # this call started it
    EXISTS = "exists"  # it runs (or ran) already: someone else, or our own lost answer
    NOT_STARTED = "not_started"  # it certainly does not run
    UNKNOWN = "unknown"  # the answer was lost and Temporal can't be asked now


@dataclass(frozen=True)
class StartResult:
    outcome: StartOutcome
    error: str | None = None
    # Temporal could not be reached or is overloaded: worth trying again later (a 503).
    unavailable: bool = False

    @property
    def runs(self) -> bool:
        return self.outcome in (StartOutcome.STARTED, StartOutcome.EXISTS)


def is_temporal_error(exc: BaseException) -> bool:
    """An error of a Temporal client call: an RPC error, or the lazy client's failed connect."""
    return isinstance(exc, RPCError) or (
        isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")
    )


def never_sent(exc: BaseException) -> bool:
    """The request certainly never reached Temporal (no connection could be made)."""
    if isinstance(exc, RuntimeError):
        return str(exc).startswith("Failed client connect")
    return (
        isinstance(exc, RPCError)
        and exc.status == RPCStatusCode.UNAVAILABLE
        and "connect error" in exc.message.lower()
    )


def is_unavailable(exc: BaseException) -> bool:
    """Temporal is down, unreachable or shedding load: a 503 with Retry-After, not a 500."""
    if never_sent(exc):
        return True
    return isinstance(exc, RPCError) and (
        exc.status in AMBIGUOUS_STATUSES or exc.status == RPCStatusCode.RESOURCE_EXHAUSTED
    )


def ambiguous(exc: BaseException) -> bool:
    """The request may have been sent and taken effect although the call failed."""
    return isinstance(exc, RPCError) and exc.status in AMBIGUOUS_STATUSES and not never_sent(exc)


async def workflow_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the workflow's latest run; None if there never was one (or it expired).

    Raises the client's error when Temporal can't be asked.
    """
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.status


async def start_resolved(
    client: Client,
    workflow_id: str,
    start: Callable[[], Awaitable[object]],
    *,
    reuses_id: bool = False,
) -> StartResult:
    """Run `start` (a workflow start) and say whether the workflow now runs.

    `reuses_id`: the id may belong to an earlier, closed run (an adoption after a crash), so
    only a *running* workflow counts as ours when an ambiguous start is resolved.
    """
    try:
        await start()
    except WorkflowAlreadyStartedError:
        return StartResult(StartOutcome.EXISTS)
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        message = getattr(exc, "message", None) or str(exc)
        if not ambiguous(exc):
            return StartResult(StartOutcome.NOT_STARTED, message, unavailable=is_unavailable(exc))
        try:
            found = await workflow_status(client, workflow_id)
        except Exception as again:
            if not is_temporal_error(again):
                raise
            return StartResult(StartOutcome.UNKNOWN, message, unavailable=True)
        if found is not None and (not reuses_id or found == WorkflowExecutionStatus.RUNNING):
            return StartResult(StartOutcome.EXISTS)
        return StartResult(StartOutcome.NOT_STARTED, message, unavailable=True)
    return StartResult(StartOutcome.STARTED)


class Unreachable(Exception):
    """Temporal could not be asked now (down, unreachable or not answering); the client's
    error is the cause, and its message this one's."""


async def signal_workflow(client: Client, workflow_id: str, signal: str, arg: Any) -> bool:
    """Send `signal` to the workflow: False when no workflow of that id runs (it never started,
    or it ended). Raises Unreachable when Temporal can't be asked."""
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, arg)
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise Unreachable(str(exc)) from exc
    return True
