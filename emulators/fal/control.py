"""The emulator's own control and observation routes (`/_emulator/...`, no auth).

Tests and benches use them to switch faults on, force outcomes, rotate the webhook signing
key and read what happened.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from emulators.common import ProviderJob, provider_jobs
from emulators.fal.deps import ApiError, EmulatorDep
from emulators.fal.models import NOT_FOUND, CompleteRequest, Faults, RotateRequest
from emulators.fal.records import Failure, Record
from emulators.fal.state import Emulator

router = APIRouter(prefix="/_emulator")


@router.get("/health")
async def health() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}


@router.get("/stats")
async def stats(emulator: EmulatorDep) -> dict[str, Any]:
    """Requests by kind, responses by status code, webhook counters, requests by status."""
    return emulator.stats.snapshot(*emulator.counts())


@router.get("/jobs")
async def jobs(emulator: EmulatorDep, job_id: str | None = None) -> dict[str, Any]:
    """Provider jobs per app job id (the `job_id=` of their webhook URL), oldest first."""
    return provider_jobs(
        (
            ProviderJob(r.id, r.webhook, r.status, r.outcome == "cancelled")
            for r in emulator.records()
        ),
        job_id,
    )


@router.get("/faults")
async def get_faults(emulator: EmulatorDep) -> Faults:
    """The global faults; `rate_limit_submits` and `server_errors` show what is left."""
    return emulator.faults.global_faults


@router.put("/faults")
async def put_faults(faults: Faults, emulator: EmulatorDep) -> Faults:
    """Replace the global faults (they apply to requests submitted from now on)."""
    emulator.faults.replace(faults)
    return emulator.faults.global_faults


@router.delete("/faults")
async def delete_faults(emulator: EmulatorDep) -> Faults:
    """Back to no global faults."""
    emulator.faults.replace(Faults())
    return emulator.faults.global_faults


@router.get("/requests/{request_id}/events")
async def events(request_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Status changes, cancels and webhook attempts of a request, with unix-float times."""
    return _record(emulator, request_id).timeline()


@router.post("/requests/{request_id}/expire")
async def expire(request_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Drop a request's files and stored result now, as retention would."""
    record = _record(emulator, request_id)
    emulator.expire(record)
    return record.timeline()


@router.post("/requests/{request_id}/complete")
async def complete(request_id: str, body: CompleteRequest, emulator: EmulatorDep) -> dict[str, Any]:
    """Complete a waiting or running request now (a completed one is left as it is)."""
    record = _record(emulator, request_id)
    failure: Failure | None = None
    if body.outcome == "error":
        failure = Failure.model_error(body.error or "Forced failure", body.status_code, None)
    elif body.outcome == "cancelled":
        failure = Failure.cancelled()
    emulator.finish(record, body.outcome, failure)
    return record.timeline()


@router.get("/jwks")
async def keys(emulator: EmulatorDep) -> dict[str, Any]:
    """The published JWKS and the id of the key signing now."""
    return {"current": emulator.keys.current.kid, **emulator.keys.jwks()}


@router.post("/keys/rotate")
async def rotate(body: RotateRequest, emulator: EmulatorDep) -> dict[str, Any]:
    """Sign with a new key from now on; the old one stays in the JWKS only with `keep_old`."""
    emulator.rotate_keys(keep_old=body.keep_old)
    return {"current": emulator.keys.current.kid, **emulator.keys.jwks()}


@router.post("/reset")
async def reset(emulator: EmulatorDep) -> dict[str, bool]:
    """Forget every request, fault and counter (the signing keys stay)."""
    await emulator.reset()
    return {"ok": True}


def _record(emulator: Emulator, request_id: str) -> Record:
    record = emulator.get(request_id)
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record
