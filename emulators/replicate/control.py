"""The emulator's own control and observation routes (`/_emulator/...`, no auth).

Tests and benches use them to switch faults on, force outcomes and read what happened.
`/_emulator/redirect?to=<url>` answers a 302 to any URL: with the `output_url` fault it plays a
file host that redirects a client somewhere it should not go.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from emulators.common import ProviderJob, provider_jobs
from emulators.replicate.deps import ApiProblem, EmulatorDep
from emulators.replicate.models import NOT_FOUND, CompleteRequest, Faults
from emulators.replicate.records import Record
from emulators.replicate.state import Emulator

router = APIRouter(prefix="/_emulator")


@router.get("/health")
async def health() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}


@router.get("/redirect")
async def redirect(to: str) -> RedirectResponse:
    """A 302 to `to`, whatever it is (a hostile file host)."""
    return RedirectResponse(to, status_code=302)


@router.get("/stats")
async def stats(emulator: EmulatorDep) -> dict[str, Any]:
    """Requests by kind, responses by status code, webhook and prediction counters."""
    return emulator.stats.snapshot(emulator.predictions_by_status())


@router.get("/jobs")
async def jobs(emulator: EmulatorDep, job_id: str | None = None) -> dict[str, Any]:
    """Provider jobs per app job id (the `job_id=` of their webhook URL), oldest first."""
    return provider_jobs(
        (
            ProviderJob(r.id, r.webhook, r.status, r.status == "canceled")
            for r in emulator.records()
        ),
        job_id,
    )


@router.get("/faults")
async def get_faults(emulator: EmulatorDep) -> Faults:
    """The global faults; `rate_limit_creates` and `server_errors` show what is left."""
    return emulator.faults.global_faults


@router.put("/faults")
async def put_faults(faults: Faults, emulator: EmulatorDep) -> Faults:
    """Replace the global faults (they apply to jobs created from now on)."""
    emulator.faults.replace(faults)
    return emulator.faults.global_faults


@router.delete("/faults")
async def delete_faults(emulator: EmulatorDep) -> Faults:
    """Back to no global faults."""
    emulator.faults.replace(Faults())
    return emulator.faults.global_faults


@router.get("/predictions/{job_id}/events")
async def events(job_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Status transitions and webhook attempts of a job, with unix-float times."""
    return _record(emulator, job_id).timeline()


@router.post("/predictions/{job_id}/expire")
async def expire(job_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Remove a job's output files now, as the one-hour retention would."""
    record = _record(emulator, job_id)
    emulator.expire_files(record)
    return record.to_json()


@router.post("/predictions/{job_id}/complete")
async def complete(job_id: str, body: CompleteRequest, emulator: EmulatorDep) -> dict[str, Any]:
    """Force a running job terminal now (a terminal one is left as it is)."""
    record = _record(emulator, job_id)
    emulator.finish(record, body.status, body.error)
    return record.to_json()


@router.post("/reset")
async def reset(emulator: EmulatorDep) -> dict[str, bool]:
    """Forget every job, fault and counter (with a state file, it is saved empty too)."""
    await emulator.reset()
    return {"ok": True}


def _record(emulator: Emulator, job_id: str) -> Record:
    record = emulator.get(job_id)
    if record is None:
        raise ApiProblem(404, NOT_FOUND)
    return record
