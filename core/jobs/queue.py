"""A queued job's place in its provider's line, asked of the provider's admission workflow."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from core.contracts import ADMISSION_POSITION_QUERY, QueuePosition, admission_workflow_id

log = logging.getLogger(__name__)
_TIMEOUT = timedelta(seconds=2)


async def queue_position(client: Client, provider: str, job_id: str) -> int | None:
    """1: the job is granted next; None when it is not waiting (granted, gone, or the line
    can't be asked now: a position is a hint, never worth failing a read for)."""
    handle = client.get_workflow_handle(admission_workflow_id(provider))
    try:
        answer: QueuePosition = await handle.query(
            ADMISSION_POSITION_QUERY, job_id, result_type=QueuePosition, rpc_timeout=_TIMEOUT
        )
    except (RPCError, RuntimeError, ValueError, TimeoutError) as exc:
        # Temporal down or slow, no line yet: the read answers without the hint.
        log.debug("no queue position for job %s: %s", job_id, exc)
        return None
    return answer.position
