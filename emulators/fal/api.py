"""fal's queue API (`/{model_id}`, `/{app}/requests/{id}[/status|/cancel]`), files and JWKS.

Status, result and cancel URLs name only the app (`owner/app`, fal drops the subpath); the
emulator also accepts them with the subpath, and answers 404 for a request of another app.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from emulators.fal.models import (
    NOT_FOUND,
    RESULT_EXPIRED,
    STILL_RUNNING,
    UNAUTHORIZED,
    Faults,
    FaultTarget,
    validation_error,
)
from emulators.fal.records import Record
from emulators.fal.state import ALREADY_COMPLETED, Emulator
from emulators.scaffold.app import ApiError, credential_ok
from emulators.scaffold.emulator import state_of
from emulators.scaffold.faults import request_key
from emulators.scaffold.media import file_size, iter_file, paced

FAULTS_KEY = "_emulator"
_TRUE = ("1", "true", "yes")
# Apps under these namespaces have three-part ids: `workflows/<owner>/<app>`.
NAMESPACES = ("workflows", "comfy")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")

EmulatorDep = Annotated[Emulator, Depends(state_of(Emulator))]


def require_key(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Key <key>`; any key is accepted when none is configured."""
    if not credential_ok(request, ("key",), emulator.config.api_key):
        raise ApiError(401, UNAUTHORIZED)


def app_id_of(model_path: str) -> str | None:
    """`owner/app` of `owner/app[/subpath]` (namespaced: `ns/owner/app`); None if malformed."""
    parts = model_path.strip("/").split("/")
    if not all(_SEGMENT.match(part) for part in parts):
        return None
    size = 3 if parts[0] in NAMESPACES else 2
    if len(parts) < size:
        return None
    return "/".join(parts[:size])


def classify(method: str, path: str) -> str | None:
    """The kind of a public call, or None for the emulator's own control routes."""
    if path.startswith("/_emulator"):
        return None
    if path.startswith("/files/"):
        return "file"
    if path == "/.well-known/jwks.json":
        return "jwks"
    parts = path.strip("/").split("/")
    if method == "POST":
        return "submit"
    if "requests" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("requests")
        tail = parts[last + 1 :]
        if method == "GET" and tail[1:] == ["status"]:
            return "status"
        if method == "GET" and len(tail) == 1:
            return "result"
        if method == "PUT" and tail[1:] == ["cancel"]:
            return "cancel"
    return "other"


queue_router = APIRouter(dependencies=[Depends(require_key)])
public_router = APIRouter()


@public_router.get("/.well-known/jwks.json")
async def jwks(emulator: EmulatorDep) -> dict[str, Any]:
    """The public keys webhook signatures verify with (fal: rest.fal.ai/.well-known/jwks.json)."""
    return emulator.keys.jwks()


@public_router.api_route("/files/{request_id}/{filename}", methods=["GET", "HEAD"])
async def get_file(
    request_id: str, filename: str, request: Request, emulator: EmulatorDep
) -> Response:
    """An output file of a successful request, until it expires (like v3.fal.media URLs)."""
    record = emulator.get(request_id)
    emulator.faults.admit(request, "file", job=None if record is None else record.job_faults)
    if (
        record is None
        or filename not in record.files
        or record.outcome != "ok"
        or record.files_expired
    ):
        raise ApiError(404, {"detail": "File not found"})
    spec = record.files[filename]
    size = file_size(spec)
    headers = {"content-length": str(size), "cache-control": "no-store"}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=spec.content_type)
    if delay := record.faults.file_delay_seconds:
        # Headers now, the body spread over `delay` (a slow copy to cancel in the middle of).
        slow = paced(iter_file(spec), size, delay)
        return StreamingResponse(slow, media_type=spec.content_type, headers=headers)
    return StreamingResponse(iter_file(spec), media_type=spec.content_type, headers=headers)


@queue_router.get("/{app_path:path}/requests/{request_id}/status")
async def request_status(
    app_path: str, request_id: str, request: Request, emulator: EmulatorDep, logs: str = "0"
) -> JSONResponse:
    """The request's status: 202 while queued or running, 200 once completed."""
    record = _lookup(request, emulator, app_path, request_id, "status")
    with_logs = logs.lower() in _TRUE
    body = record.status_json(emulator.queue_position(record), with_logs=with_logs)
    return JSONResponse(body, status_code=200 if record.terminal else 202)


@queue_router.get("/{app_path:path}/requests/{request_id}")
async def request_result(
    app_path: str, request_id: str, request: Request, emulator: EmulatorDep
) -> JSONResponse:
    """The model's answer: its output, or its error with the model's own status code."""
    record = _lookup(request, emulator, app_path, request_id, "result")
    if not record.terminal:
        raise ApiError(400, STILL_RUNNING)
    if record.result_expired:
        raise ApiError(410, RESULT_EXPIRED)
    # The model's own answer, so it carries the request id (fal_client reads a 5xx without it
    # as an ingress error and retries).
    headers = {"x-fal-request-id": record.id}
    failure = record.failure
    if failure is not None:
        if failure.error_type:
            headers["x-fal-error-type"] = failure.error_type
        return JSONResponse(failure.body, status_code=failure.status_code, headers=headers)
    return JSONResponse(record.payload, headers=headers)


@queue_router.put("/{app_path:path}/requests/{request_id}/cancel")
async def cancel_request(
    app_path: str, request_id: str, request: Request, emulator: EmulatorDep
) -> JSONResponse:
    """Remove a queued request or signal a running one (202); 400 once it has completed."""
    try:
        record = _lookup(request, emulator, app_path, request_id, "cancel")
    except ApiError as exc:
        if exc.status_code == 404:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        raise
    outcome = emulator.cancel(record)
    return JSONResponse(
        {"status": outcome}, status_code=400 if outcome == ALREADY_COMPLETED else 202
    )


@queue_router.post("/{model_path:path}")
async def submit(
    model_path: str, request: Request, emulator: EmulatorDep, fal_webhook: str | None = None
) -> JSONResponse:
    """Queue a request for `model_path` (`owner/app[/subpath]`); `?fal_webhook=` for the result."""
    app_id = app_id_of(model_path)
    if app_id is None or model_path.startswith(("_emulator", ".well-known", "files/")):
        raise ApiError(404, {"detail": f"Application {model_path!r} not found"})
    if fal_webhook is not None and not fal_webhook.startswith(("http://", "https://")):
        raise ApiError(422, validation_error("fal_webhook must be an http(s) URL", ["query"]))
    payload = await _json_object(request)
    specific = _faults(payload)
    key = request_key(request.url.path, payload)
    emulator.faults.admit(request, "submit", key=key, specific=specific)
    record = emulator.submit(
        model_id=model_path.strip("/"),
        app_id=app_id,
        payload=payload,
        specific=specific,
        webhook=fal_webhook,
        base_url=emulator.config.base_url(request),
    )
    return JSONResponse(record.submit_json(emulator.queue_position(record)))


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ApiError(422, validation_error("Body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise ApiError(422, validation_error("Input should be a valid dictionary"))
    return body


def _faults(payload: dict[str, Any]) -> Faults | None:
    """Take the per-request faults out of the input (the model never sees them)."""
    if FAULTS_KEY not in payload:
        return None
    try:
        return Faults.model_validate(payload.pop(FAULTS_KEY))
    except ValidationError as exc:
        raise ApiError(
            422, validation_error(f"invalid faults: {exc.errors()[0]['msg']}", ["body", FAULTS_KEY])
        ) from None


def _lookup(
    request: Request, emulator: Emulator, app_path: str, request_id: str, target: FaultTarget
) -> Record:
    """The request (404 if none, or another app's), once the faults let the call through."""
    record = emulator.get(request_id)
    if record is not None and app_id_of(app_path) != record.app_id:
        record = None
    emulator.faults.admit(request, target, job=None if record is None else record.job_faults)
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record
