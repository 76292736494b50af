"""Activities of the per-provider admission (workflows.admission): asking for a slot with
signal-with-start, giving it back, pausing a provider's line on a 429, and finding holders
whose workflow ended without giving theirs back."""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import (
    ADMISSION_ENDED,
    ADMISSION_PAUSE_SIGNAL,
    ADMISSION_RELEASE,
    ADMISSION_RELEASE_SIGNAL,
    ADMISSION_REQUEST,
    ADMISSION_REQUEST_SIGNAL,
    ADMISSION_WORKFLOW,
    AdmissionRelease,
    AdmissionRequest,
    AdmissionState,
    admission_workflow_id,
    media_job_workflow_id,
)

log = logging.getLogger(__name__)


class AdmissionActivities:
    def __init__(self, *, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue  # where the admission workflows run

    @activity.defn(name=ADMISSION_REQUEST)
    async def request(self, req: AdmissionRequest) -> None:
        """Ask the provider's admission workflow for a slot, starting it if it isn't running."""
        await self._client.start_workflow(
            ADMISSION_WORKFLOW,
            AdmissionState(provider=req.provider, limits=req.limits),
            id=admission_workflow_id(req.provider),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=ADMISSION_REQUEST_SIGNAL,
            start_signal_args=[req],
            static_summary=f"admission to {req.provider}",
        )

    @activity.defn(name=ADMISSION_RELEASE)
    async def release(self, rel: AdmissionRelease) -> None:
        """Give the slot (or the place in line) back; nothing to do if the line is gone."""
        handle = self._client.get_workflow_handle(admission_workflow_id(rel.provider))
        try:
            await handle.signal(ADMISSION_RELEASE_SIGNAL, rel)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    @activity.defn(name=ADMISSION_ENDED)
    async def ended(self, job_ids: list[str]) -> list[str]:
        """The jobs among `job_ids` whose workflow is no longer running."""
        gone: list[str] = []
        for job_id in job_ids:
            handle = self._client.get_workflow_handle(media_job_workflow_id(job_id))
            try:
                described = await handle.describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                gone.append(job_id)
                continue
            if described.status != WorkflowExecutionStatus.RUNNING:
                gone.append(job_id)
        return gone

    async def pause(self, provider: str, seconds: float) -> None:
        """A provider answered 429: its line waits `seconds` before the next grant (best
        effort: the job's own retry still waits its Retry-After)."""
        handle = self._client.get_workflow_handle(admission_workflow_id(provider))
        try:
            await handle.signal(ADMISSION_PAUSE_SIGNAL, seconds)
        except RPCError as err:
            log.warning("could not pause the %s line for %gs: %s", provider, seconds, err)
