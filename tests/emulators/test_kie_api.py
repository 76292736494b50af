"""The KIE emulator's HTTP protocol: createTask, recordInfo, body-level codes, result files."""

from __future__ import annotations

import json
import struct
import zlib

import httpx

from tests.emulators.kie_support import (
    IMAGE_MODEL,
    VIDEO_MODEL,
    create,
    events,
    record,
    result_urls,
    task_body,
    wait_state,
)
from tests.emulators.support import wait_for

pytest_plugins = ["tests.emulators.kie_fixtures"]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_task_moves_through_every_state_to_success(kie_api: httpx.Client) -> None:
    body = task_body(aspect_ratio="16:9")
    task_id = create(kie_api, body)
    assert task_id.startswith("task_")
    first = record(kie_api, task_id)
    assert first["state"] == "waiting"
    assert first["resultJson"] == "" and first["completeTime"] is None
    assert json.loads(first["param"]) == body  # the original request, as a JSON string

    done = wait_state(kie_api, task_id)
    assert done["state"] == "success"
    assert done["failCode"] == "" and done["failMsg"] == ""
    assert done["createTime"] <= done["updateTime"] == done["completeTime"]
    assert isinstance(done["costTime"], int)
    states = [e["state"] for e in events(kie_api, task_id) if e["type"] == "state"]
    assert states == ["waiting", "queuing", "generating", "success"]

    [url] = result_urls(done)
    image = kie_api.get(url)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert png_size(image.content) == (128, 72)


def test_record_info_answers_with_message_and_create_with_msg(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body())
    answer = kie_api.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()
    assert answer["code"] == 200 and answer["message"] == "success"
    assert answer["data"]["taskId"] == task_id and answer["data"]["model"] == IMAGE_MODEL


def test_num_images_and_video_outputs(kie_api: httpx.Client) -> None:
    images = wait_state(kie_api, create(kie_api, task_body(num_images=3)))
    assert [u.rsplit("/", 1)[1] for u in result_urls(images)] == [
        "out-0.png",
        "out-1.png",
        "out-2.png",
    ]

    video = wait_state(kie_api, create(kie_api, task_body(model=VIDEO_MODEL)))
    [url] = result_urls(video)
    clip = kie_api.get(url)
    assert clip.headers["content-type"] == "video/mp4"
    assert clip.content[4:8] == b"ftyp" and b"mdat" in clip.content


def test_errors_are_body_codes_with_http_200(kie_url: str, kie_api: httpx.Client) -> None:
    anonymous = httpx.post(f"{kie_url}/api/v1/jobs/createTask", json=task_body())
    assert anonymous.status_code == 200
    assert anonymous.json()["code"] == 401 and anonymous.json()["data"] is None
    wrong = httpx.get(
        f"{kie_url}/api/v1/jobs/recordInfo",
        params={"taskId": "x"},
        headers={"Authorization": "Bearer not-the-key"},
    )
    assert wrong.json()["code"] == 401

    invalid = kie_api.post("/api/v1/jobs/createTask", json={"input": {}})
    assert (invalid.status_code, invalid.json()["code"]) == (200, 422)
    assert "model" in invalid.json()["msg"]
    bad_callback = kie_api.post(
        "/api/v1/jobs/createTask",
        json={"model": IMAGE_MODEL, "input": {}, "callBackUrl": "ftp://x"},
    )
    assert bad_callback.json()["code"] == 422
    unknown = kie_api.get("/api/v1/jobs/recordInfo", params={"taskId": "task_nope"})
    assert unknown.status_code == 200
    assert unknown.json() == {"code": 422, "msg": "recordInfo is null", "data": None}
    assert kie_api.get("/api/v1/jobs/recordInfo").json()["code"] == 400


def test_unknown_routes_get_a_real_404(kie_api: httpx.Client) -> None:
    assert kie_api.get("/api/v1/jobs/nothing").status_code == 404


def test_mirrored_http_status_repeats_the_code(kie_api: httpx.Client) -> None:
    kie_api.put(
        "/_emulator/faults", json={"http_status_mirrors_code": True, "reject_code": 402}
    ).raise_for_status()
    response = kie_api.post("/api/v1/jobs/createTask", json=task_body())
    assert response.status_code == 402
    assert response.json()["code"] == 402


def test_result_files_expire_when_the_clock_passes_their_ttl(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body({"file_ttl_seconds": 3600}))
    [url] = result_urls(wait_state(kie_api, task_id))
    assert kie_api.head(url).status_code == 200
    kie_api.post("/_emulator/clock", json={"advance_seconds": 3601}).raise_for_status()
    assert kie_api.get(url).status_code == 404
    # recordInfo still hands out the dead URL, as KIE does after its 24 hours.
    assert result_urls(record(kie_api, task_id)) == [url]


def test_expire_now(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body())
    [url] = result_urls(wait_state(kie_api, task_id))
    kie_api.post(f"/_emulator/tasks/{task_id}/expire").raise_for_status()
    assert kie_api.get(url).status_code == 404


def test_clock_moves_a_slow_task_forward(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body({"generating_seconds": 3600}))
    wait_state(kie_api, task_id, ("generating",))
    kie_api.post("/_emulator/clock", json={"advance_seconds": 3600}).raise_for_status()
    assert wait_state(kie_api, task_id)["state"] == "success"


def test_stats_count_requests_codes_and_tasks(kie_url: str, kie_api: httpx.Client) -> None:
    before = kie_api.get("/_emulator/stats").json()
    task_id = create(kie_api, task_body())
    kie_api.get("/api/v1/jobs/recordInfo", params={"taskId": "task_nope"})
    wait_state(kie_api, task_id)
    after = wait_for(
        lambda: kie_api.get("/_emulator/stats").json(),
        lambda stats: stats["tasks"]["success"] > before["tasks"]["success"],
        what="stats to count the task",
    )
    assert after["requests"]["create"] == before["requests"]["create"] + 1
    assert after["requests"]["record"] > before["requests"]["record"]
    assert after["codes"]["422"] == before["codes"].get("422", 0) + 1
    assert set(after["tasks"]) == {"waiting", "queuing", "generating", "success", "fail"}
