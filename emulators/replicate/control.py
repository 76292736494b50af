"""The Replicate emulator's own control routes (`/_emulator/...`, no auth), besides the
scaffold's common ones (health, stats, faults, jobs, reset).

Tests and benches use them to force outcomes and read what happened to a job.
`/_emulator/redirect?to=<url>` answers a 302 to any URL: with the `output_url` fault it plays a
file host that redirects a client somewhere it should not go.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from emulators.replicate.api import EmulatorDep
from emulators.replicate.models import NOT_FOUND, CompleteRequest
from emulators.replicate.records import Record
from emulators.replicate.state import Emulator
from emulators.scaffold.app import ApiError

router = APIRouter(prefix="/_emulator")


@router.get("/redirect")
async def redirect(to: str) -> RedirectResponse:
    """A 302 to `to`, whatever it is (a hostile file host)."""
    return RedirectResponse(to, status_code=302)


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


def _record(emulator: Emulator, job_id: str) -> Record:
    record = emulator.get(job_id)
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record
