"""The fal emulator's own control routes (`/_emulator/...`, no auth), besides the scaffold's
common ones (health, stats, faults, jobs, reset).

Tests and benches use them to force outcomes, rotate the webhook signing key and read what
happened to a request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from emulators.fal.api import EmulatorDep
from emulators.fal.models import NOT_FOUND, CompleteRequest, RotateRequest
from emulators.fal.records import Failure, Record
from emulators.fal.state import Emulator
from emulators.scaffold.app import ApiError

router = APIRouter(prefix="/_emulator")


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


def _record(emulator: Emulator, request_id: str) -> Record:
    record = emulator.get(request_id)
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record
