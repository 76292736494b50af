"""Recovery (admin): check or run the sweep now.

The sweep itself runs as RecoveryWorkflow on a Temporal Schedule (`autosync-recovery`); these
routes start the same workflow on demand and wait for its report. Adopting a job started
outside the system is a jobs route (`POST /v1/jobs/adopt`, `api.routes.jobs`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api.deps import AdminCaller, SettingsDep, TemporalDep
from api.errors import temporal_errors_as_503
from core.links import workflow_url
from core.recovery import RecoveryReport
from core.settings import Settings
from workflows.recovery import RecoveryWorkflow

REPORT_WAIT_SECONDS = 60.0


router = APIRouter(prefix="/v1", tags=["recovery"])


async def _sweep(temporal: Client, settings: Settings, dry_run: bool) -> JSONResponse:
    workflow_id = f"recovery-{'check' if dry_run else 'sweep'}-{uuid.uuid4().hex[:12]}"
    try:
        async with temporal_errors_as_503():
            handle = await temporal.start_workflow(
                RecoveryWorkflow.run, dry_run, id=workflow_id, task_queue=settings.media_task_queue
            )
            report: RecoveryReport = await asyncio.wait_for(handle.result(), REPORT_WAIT_SECONDS)
    except TimeoutError:
        # Where to follow it: the sweep has no resource of its own in this API.
        where = workflow_url(settings, workflow_id)
        return JSONResponse(
            {"workflow_id": workflow_id, "status": "running",
             "message": "the sweep takes longer than usual: follow it in the Temporal UI"},
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": where} if where else None,
        )  # fmt: skip
    return JSONResponse(
        {"workflow_id": workflow_id, "dry_run": report.dry_run, "checked": report.checked,
         "counts": report.counts, "items": [asdict(item) for item in report.items]}
    )  # fmt: skip


@router.post("/recovery/check", tags=["recovery"])
async def check(caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep) -> JSONResponse:
    """What a sweep would do now: jobs at risk, the problem found and the action planned."""
    return await _sweep(temporal, settings, dry_run=True)


@router.post("/recovery/trigger", tags=["recovery"])
async def trigger(
    caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep
) -> JSONResponse:
    """Run a sweep now (as the schedule would) and report what it did."""
    return await _sweep(temporal, settings, dry_run=False)
