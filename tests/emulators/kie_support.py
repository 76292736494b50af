"""Helpers of the KIE emulator tests: constants and API shortcuts (fixtures: kie_fixtures.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.emulators.support import wait_for

KIE_KEY = "kie-test-key"
HMAC_KEY = "kie-test-hmac-key"
CALLBACK_RETRY_DELAYS = [0.2, 0.2, 0.3]  # the emulator under test retries callbacks after these
TERMINAL = ("success", "fail")
IMAGE_MODEL = "google/nano-banana"
VIDEO_MODEL = "kling/v2-1-master-text-to-video"


def task_body(
    faults: dict[str, Any] | None = None,
    *,
    model: str = IMAGE_MODEL,
    callback: str | None = None,
    **input_fields: Any,
) -> dict[str, Any]:
    """A createTask body no other test sends (create faults count per identical body)."""
    payload: dict[str, Any] = {"prompt": "a lighthouse", "seed": uuid.uuid4().hex, **input_fields}
    if faults is not None:
        payload["_emulator"] = faults
    body: dict[str, Any] = {"model": model, "input": payload}
    if callback is not None:
        body["callBackUrl"] = callback
    return body


def create(api: httpx.Client, body: dict[str, Any]) -> str:
    """Create a task, check KIE's success envelope and return the task id."""
    response = api.post("/api/v1/jobs/createTask", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == 200 and answer["msg"] == "success", answer
    task_id: str = answer["data"]["taskId"]
    return task_id


def record(api: httpx.Client, task_id: str) -> dict[str, Any]:
    """recordInfo's `data` for a task, after checking the envelope."""
    response = api.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == 200, answer
    data: dict[str, Any] = answer["data"]
    return data


async def record_async(http: httpx.AsyncClient, base_url: str, task_id: str) -> dict[str, Any]:
    """`record` for async tests, on an async client."""
    response = await http.get(
        f"{base_url}/api/v1/jobs/recordInfo",
        params={"taskId": task_id},
        headers={"Authorization": f"Bearer {KIE_KEY}"},
    )
    answer = response.json()
    assert answer["code"] == 200, answer
    data: dict[str, Any] = answer["data"]
    return data


def wait_state(
    api: httpx.Client, task_id: str, states: tuple[str, ...] = TERMINAL
) -> dict[str, Any]:
    """Poll recordInfo until the task's state is one of `states`; return its data."""
    return wait_for(
        lambda: record(api, task_id),
        lambda data: data["state"] in states,
        what=f"{task_id} to reach {states}",
    )


def result_urls(data: dict[str, Any]) -> list[str]:
    """`resultJson` is a JSON string: parse it a second time."""
    assert isinstance(data["resultJson"], str)
    urls: list[str] = json.loads(data["resultJson"])["resultUrls"]
    return urls


def events(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/_emulator/tasks/{task_id}/events")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def callback_attempts(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    return [e for e in events(api, task_id) if e["type"] == "webhook"]


def hook_name() -> str:
    return uuid.uuid4().hex
