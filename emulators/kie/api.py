"""KIE's market job API (`/api/v1/jobs/...`) and the result file host (`/files/...`).

Every answer of the job API is an envelope `{code, msg|message, data}`: createTask and errors
use `msg`, recordInfo `message`, as KIE's reference shows them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from emulators.kie.models import RECORD_NOT_FOUND, Faults, KieError
from emulators.kie.state import Emulator
from emulators.scaffold.app import credential_ok
from emulators.scaffold.emulator import state_of
from emulators.scaffold.faults import request_key
from emulators.scaffold.media import file_size, iter_file

FAULTS_KEY = "_emulator"

EmulatorDep = Annotated[Emulator, Depends(state_of(Emulator))]


def require_key(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Bearer <key>`; any key if none is configured. Failing is code 401."""
    if not credential_ok(request, ("bearer",), emulator.config.api_key):
        raise KieError(401, faults=emulator.faults.global_faults)


def classify(method: str, path: str) -> str | None:
    """The request kind of a public call, or None for the emulator's own control routes."""
    if path == "/api/v1/jobs/createTask":
        return "create"
    if path == "/api/v1/jobs/recordInfo":
        return "record"
    if path.startswith("/files/"):
        return "file"
    if path.startswith("/_emulator"):
        return None
    return "other"


router = APIRouter(prefix="/api/v1/jobs", dependencies=[Depends(require_key)])
files_router = APIRouter()


@router.post("/createTask")
async def create_task(request: Request, emulator: EmulatorDep) -> dict[str, Any]:
    """Create a task on a market model; its result comes by callback or recordInfo."""
    glob = emulator.faults.global_faults
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise KieError(422, "request body is not valid JSON", faults=glob) from None
    if not isinstance(body, dict):
        raise KieError(422, "request body must be a JSON object", faults=glob)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise KieError(422, "model is required", faults=glob)
    payload = body.get("input")
    if not isinstance(payload, dict):
        raise KieError(422, "input is required and must be an object", faults=glob)
    callback_url = body.get("callBackUrl")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise KieError(422, "callBackUrl must be an http(s) URL", faults=glob)

    payload = dict(payload)
    specific: Faults | None = None
    if FAULTS_KEY in payload:
        try:
            specific = Faults.model_validate(payload.pop(FAULTS_KEY))
        except ValidationError as exc:
            raise KieError(
                422, f"input.{FAULTS_KEY}: {exc.errors()[0]['msg']}", faults=glob
            ) from None
    faults = emulator.faults.effective(specific)
    if faults.reject_code is not None:
        raise KieError(faults.reject_code, faults=faults)
    emulator.faults.admit(request, "create", key=request_key(body), specific=specific)

    task = emulator.create(
        model=model,
        payload=payload,
        callback_url=callback_url,
        base_url=emulator.config.base_url(request),
        specific=specific,
    )
    emulator.codes["200"] += 1
    return {"code": 200, "msg": "success", "data": {"taskId": task.id}}


@router.get("/recordInfo")
async def record_info(
    request: Request,
    emulator: EmulatorDep,
    task_id: Annotated[str | None, Query(alias="taskId")] = None,
) -> dict[str, Any]:
    """A task's state; `resultJson` is a JSON string once it succeeded."""
    glob = emulator.faults.global_faults
    if not task_id:
        raise KieError(400, "taskId parameter is required", faults=glob)
    task = emulator.get(task_id)
    if task is None:
        emulator.faults.admit(request, "record")
        raise KieError(*RECORD_NOT_FOUND, faults=glob)
    emulator.faults.admit(request, "record", job=task.job_faults, job_switches=task.faults)
    emulator.codes["200"] += 1
    return {"code": 200, "message": "success", "data": task.to_data()}


@files_router.api_route("/files/{task_id}/{name}", methods=["GET", "HEAD"])
async def get_file(task_id: str, name: str, request: Request, emulator: EmulatorDep) -> Response:
    """A result file, from success until it expires (then a plain 404)."""
    task = emulator.get(task_id)
    job = None if task is None else task.job_faults
    emulator.faults.admit(
        request, "file", job=job, job_switches=None if task is None else task.faults
    )
    if task is None or not emulator.file_available(task, name):
        return Response(status_code=404)
    spec = task.files[name]
    headers = {"content-length": str(file_size(spec)), "cache-control": "no-store"}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=spec.content_type)
    return StreamingResponse(iter_file(spec), media_type=spec.content_type, headers=headers)
