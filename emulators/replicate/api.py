"""Replicate's public HTTP API (`/v1/...`) and the output file host (`/files/...`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from emulators.replicate.models import (
    NOT_FOUND,
    SERVER_ERROR_BODY,
    UNAUTHENTICATED,
    FaultTarget,
    InvalidField,
)
from emulators.replicate.parsing import (
    VERSION_ID,
    CreateRequest,
    ValidationFailed,
    parse_create,
    parse_duration,
    parse_prefer_wait,
)
from emulators.replicate.records import Record, RecordKind, derived_version
from emulators.replicate.state import Emulator
from emulators.scaffold.app import ApiError, credential_ok
from emulators.scaffold.emulator import state_of
from emulators.scaffold.faults import CallRefused, request_key
from emulators.scaffold.media import file_size, iter_file, paced

PAGE_SIZE = 100

EmulatorDep = Annotated[Emulator, Depends(state_of(Emulator))]


def require_token(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Bearer <token>` (or the old `Token <token>`); any token if none is set."""
    if not credential_ok(request, ("bearer", "token"), emulator.config.api_token):
        raise ApiError(401, UNAUTHENTICATED)


def classify(method: str, path: str) -> str | None:
    """The request kind of a public call, or None for the emulator's own control routes."""
    if path.startswith("/_emulator") or not path.startswith(("/v1/", "/files/")):
        return None
    if path.startswith("/files/"):
        return "file"
    if path == "/v1/webhooks/default/secret":
        return "secret"
    parts = path.strip("/").split("/")
    if method == "POST":
        if parts[-1] == "cancel":
            return "cancel"
        if parts[-1] in ("predictions", "trainings"):
            return "create"
    if method == "GET" and len(parts) == 2 and parts[1] in ("predictions", "trainings"):
        return "list"
    if method == "GET" and len(parts) == 3 and parts[1] in ("predictions", "trainings"):
        return "get"
    return "other"


router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])
files_router = APIRouter()


@router.post("/predictions", status_code=201)
async def create_prediction(request: Request, emulator: EmulatorDep) -> JSONResponse:
    """Create a prediction from a version id, `owner/name:<id>` or an official `owner/name`."""
    body = await _json_body(request)
    parsed = parse_create(body, with_version=True)
    assert parsed.version is not None
    model = parsed.version.model
    if model is None:
        model = emulator.model_for_version(parsed.version.version)
    elif parsed.version.version != "hidden":
        emulator.remember_version(parsed.version.version, model)
    return await _create(
        request,
        emulator,
        body,
        parsed,
        kind="prediction",
        model=model,
        version=parsed.version.version,
    )


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(
    owner: str, name: str, request: Request, emulator: EmulatorDep
) -> JSONResponse:
    """Create a prediction on an official model (its version stays `hidden`)."""
    body = await _json_body(request)
    parsed = parse_create(body)
    return await _create(
        request,
        emulator,
        body,
        parsed,
        kind="prediction",
        model=f"{owner}/{name}",
        version="hidden",
    )


@router.post("/deployments/{owner}/{name}/predictions", status_code=201)
async def create_deployment_prediction(
    owner: str, name: str, request: Request, emulator: EmulatorDep
) -> JSONResponse:
    """Create a prediction on a deployment, which pins one (derived) version of its model."""
    body = await _json_body(request)
    parsed = parse_create(body)
    deployment = f"{owner}/{name}"
    return await _create(
        request,
        emulator,
        body,
        parsed,
        kind="prediction",
        model=deployment,
        version=derived_version(f"deployment:{deployment}"),
        deployment=deployment,
    )


@router.post("/models/{owner}/{name}/versions/{version_id}/trainings", status_code=201)
async def create_training(
    owner: str, name: str, version_id: str, request: Request, emulator: EmulatorDep
) -> JSONResponse:
    """Train a new version of `destination` from this trainer version."""
    body = await _json_body(request)
    problems: list[InvalidField] = []
    if not VERSION_ID.match(version_id):
        problems.append(
            InvalidField(type="format", field="version", description="Invalid version id")
        )
    try:
        parsed = parse_create(body, with_destination=True)
    except ValidationFailed as exc:
        raise ValidationFailed(problems + exc.fields) from None
    if problems:
        raise ValidationFailed(problems)
    emulator.remember_version(version_id, f"{owner}/{name}")
    return await _create(
        request,
        emulator,
        body,
        parsed,
        kind="training",
        model=f"{owner}/{name}",
        version=version_id,
    )


@router.get("/predictions")
async def list_predictions(
    request: Request, emulator: EmulatorDep, cursor: int = 0
) -> dict[str, Any]:
    """Predictions, newest first, 100 a page."""
    emulator.faults.admit(request, "list")
    return _page(request, emulator, "prediction", cursor)


@router.get("/trainings")
async def list_trainings(
    request: Request, emulator: EmulatorDep, cursor: int = 0
) -> dict[str, Any]:
    """Trainings, newest first, 100 a page."""
    emulator.faults.admit(request, "list")
    return _page(request, emulator, "training", cursor)


@router.get("/predictions/{job_id}")
async def get_prediction(job_id: str, request: Request, emulator: EmulatorDep) -> dict[str, Any]:
    """A prediction (or a training: Replicate serves both here)."""
    return _lookup(request, emulator, job_id, None, "get").to_json()


@router.get("/trainings/{job_id}")
async def get_training(job_id: str, request: Request, emulator: EmulatorDep) -> dict[str, Any]:
    """A training."""
    return _lookup(request, emulator, job_id, "training", "get").to_json()


@router.post("/predictions/{job_id}/cancel")
async def cancel_prediction(job_id: str, request: Request, emulator: EmulatorDep) -> dict[str, Any]:
    """Cancel a running prediction; a finished one comes back unchanged."""
    record = _lookup(request, emulator, job_id, None, "cancel")
    emulator.cancel(record)
    return record.to_json()


@router.post("/trainings/{job_id}/cancel")
async def cancel_training(job_id: str, request: Request, emulator: EmulatorDep) -> dict[str, Any]:
    """Cancel a running training; a finished one comes back unchanged."""
    record = _lookup(request, emulator, job_id, "training", "cancel")
    emulator.cancel(record)
    return record.to_json()


@router.get("/webhooks/default/secret")
async def webhook_secret(emulator: EmulatorDep) -> dict[str, str]:
    """The account's webhook signing secret."""
    return {"key": emulator.config.webhook_secret}


@files_router.api_route("/files/{job_id}/{filename}", methods=["GET", "HEAD"])
async def get_file(job_id: str, filename: str, request: Request, emulator: EmulatorDep) -> Response:
    """An output file, until its job's data is removed (like replicate.delivery URLs)."""
    record = _lookup(request, emulator, job_id, None, "file")
    if filename not in record.published:
        raise ApiError(404, NOT_FOUND)
    spec = record.files[filename]
    size = file_size(spec)
    headers = {"content-length": str(size), "cache-control": "no-store"}
    if record.faults.file_without_length:
        del headers["content-length"]
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=spec.content_type)
    if delay := record.faults.file_delay_seconds:
        # Headers now, the body spread over `delay` (a slow copy to cancel in the middle of).
        slow = paced(iter_file(spec), size, delay)
        return StreamingResponse(slow, media_type=spec.content_type, headers=headers)
    return StreamingResponse(iter_file(spec), media_type=spec.content_type, headers=headers)


def _list_item(record: Record) -> dict[str, Any]:
    item = record.to_json()
    if record.faults.list_without_webhook:
        del item["webhook"], item["webhook_events_filter"]
    return item


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationFailed(
            [InvalidField(type="json", field="body", description="Body is not valid JSON")]
        ) from None


async def _create(
    request: Request,
    emulator: Emulator,
    body: Any,
    parsed: CreateRequest,
    *,
    kind: RecordKind,
    model: str,
    version: str,
    deployment: str | None = None,
) -> JSONResponse:
    cancel_after: float | None = None
    if (header := request.headers.get("cancel-after")) is not None:
        cancel_after = parse_duration(header)
        if cancel_after is None:
            raise ValidationFailed(
                [
                    InvalidField(
                        type="format",
                        field="Cancel-After",
                        description="Cancel-After must be a duration such as 30s, 5m or 1h",
                    )
                ]
            )
    key = request_key(request.url.path, body)
    emulator.faults.admit(request, "create", key=key, specific=parsed.faults)
    record = emulator.create(
        parsed,
        kind=kind,
        model=model,
        version=version,
        base_url=emulator.config.base_url(request),
        cancel_after=cancel_after,
        deployment=deployment,
    )
    wait = parse_prefer_wait(request.headers.get("prefer"))
    if wait:
        await emulator.wait_terminal(record, wait)
    if emulator.faults.take("lost_create_responses", key, parsed.faults):
        emulator.note_answer_lost(record)
        raise ApiError(500, SERVER_ERROR_BODY)
    return JSONResponse(record.to_json(), status_code=201)


def _lookup(
    request: Request,
    emulator: Emulator,
    job_id: str,
    kind: RecordKind | None,
    target: FaultTarget,
) -> Record:
    """The job (404 if none), once the faults let the call through."""
    record = emulator.get(job_id, kind)
    try:
        emulator.faults.admit(request, target, job=None if record is None else record.job_faults)
    except CallRefused:
        if record is not None:
            emulator.note_fault_used(record)  # its own count may have gone down
        raise
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record


def _page(request: Request, emulator: Emulator, kind: RecordKind, cursor: int) -> dict[str, Any]:
    records = emulator.list(kind)
    start = max(cursor, 0)
    here = f"{emulator.config.base_url(request)}{request.url.path}"
    after = start + PAGE_SIZE
    return {
        "previous": f"{here}?cursor={max(start - PAGE_SIZE, 0)}" if start > 0 else None,
        "next": f"{here}?cursor={after}" if after < len(records) else None,
        "results": [_list_item(record) for record in records[start:after]],
    }
