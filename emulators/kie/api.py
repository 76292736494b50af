"""KIE's market job API (`/api/v1/jobs/...`) and the result file host (`/files/...`).

Every answer of the job API is an envelope `{code, msg|message, data}`: createTask and errors
use `msg`, recordInfo `message`, as KIE's reference shows them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from emulators.kie.deps import EmulatorDep, KieError, base_url, require_key
from emulators.kie.faults import body_key
from emulators.kie.models import RECORD_NOT_FOUND, Faults
from emulators.replicate.files import file_size, iter_file

FAULTS_KEY = "_emulator"

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
    fault = emulator.faults.on_create(body_key(body), specific)
    if fault is not None:
        raise KieError.from_fault(fault, faults)

    task = emulator.create(
        model=model,
        payload=payload,
        callback_url=callback_url,
        base_url=base_url(request, emulator),
        specific=specific,
    )
    if faults.create_delay_seconds:
        await asyncio.sleep(faults.create_delay_seconds)
    emulator.stats.codes["200"] += 1
    return {"code": 200, "msg": "success", "data": {"taskId": task.id}}


@router.get("/recordInfo")
async def record_info(
    emulator: EmulatorDep, task_id: Annotated[str | None, Query(alias="taskId")] = None
) -> dict[str, Any]:
    """A task's state; `resultJson` is a JSON string once it succeeded."""
    glob = emulator.faults.global_faults
    if not task_id:
        raise KieError(400, "taskId parameter is required", faults=glob)
    task = emulator.get(task_id)
    fault = emulator.faults.on_record(task)
    if fault is not None:
        raise KieError.from_fault(fault, task.faults if task is not None else glob)
    if task is None:
        raise KieError(*RECORD_NOT_FOUND, faults=glob)
    emulator.stats.codes["200"] += 1
    return {"code": 200, "message": "success", "data": task.to_data()}


@files_router.api_route("/files/{task_id}/{name}", methods=["GET", "HEAD"])
async def get_file(task_id: str, name: str, request: Request, emulator: EmulatorDep) -> Response:
    """A result file, from success until it expires (then a plain 404)."""
    task = emulator.get(task_id)
    if task is None or not emulator.file_available(task, name):
        return Response(status_code=404)
    spec = task.files[name]
    headers = {"content-length": str(file_size(spec)), "cache-control": "no-store"}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=spec.content_type)
    return StreamingResponse(iter_file(spec), media_type=spec.content_type, headers=headers)
