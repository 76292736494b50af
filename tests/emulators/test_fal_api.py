"""The fal emulator's queue API over real HTTP: submit, status, result, cancel, files, auth."""

from __future__ import annotations

import struct
import uuid

import httpx

from tests.emulators.fal_support import (
    FAL_KEY,
    IMAGE_MODEL,
    VIDEO_MODEL,
    status,
    submit,
    timeline,
    wait_completed,
    wait_status,
)
from tests.emulators.support import wait_for

pytest_plugins = ("tests.emulators.fal_fixtures",)  # the fal_url and fal_api fixtures


def unique_app() -> str:
    """An app of its own, so queue positions don't count other tests' requests."""
    return f"acme/app-{uuid.uuid4().hex[:8]}"


def test_submit_answers_with_app_level_urls(fal_api: httpx.Client, fal_url: str) -> None:
    submitted = submit(fal_api, {"prompt": "a lighthouse"}, model=IMAGE_MODEL)
    request_id = submitted["request_id"]
    assert uuid.UUID(request_id).version == 4
    assert submitted["gateway_request_id"] == request_id
    # fal drops the endpoint subpath (`/dev`) from the request URLs.
    base = f"{fal_url}/fal-ai/flux/requests/{request_id}"
    assert submitted["response_url"] == base
    assert submitted["status_url"] == f"{base}/status"
    assert submitted["cancel_url"] == f"{base}/cancel"
    assert isinstance(submitted["queue_position"], int)


def test_status_moves_from_queue_to_progress_to_completed(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {"prompt": "a lighthouse"}, model=unique_app())
    first = status(fal_api, submitted)
    assert first.status_code == 202
    assert first.json()["status"] == "IN_QUEUE"
    assert first.json()["queue_position"] == 0
    assert first.json()["logs"] is None  # present even without ?logs=1 (fal_client needs it)

    running = wait_status(fal_api, submitted, "IN_PROGRESS")
    assert "queue_position" in running and "logs" in running

    done = wait_completed(fal_api, submitted)
    assert done["status"] == "COMPLETED"
    assert "error" not in done
    assert "inference_time" in done["metrics"]
    messages = [entry["message"] for entry in done["logs"]]
    assert messages[0].startswith("Starting inference of acme/app-")
    assert {"level", "source", "timestamp"} <= set(done["logs"][0])
    statuses = [e["status"] for e in timeline(fal_api, submitted["request_id"])["events"]]
    assert statuses == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


def test_image_result_links_real_pngs_of_the_stated_size(fal_api: httpx.Client) -> None:
    body = {"prompt": "two cats", "num_images": 2, "image_size": "portrait_16_9", "seed": 7}
    submitted = submit(fal_api, body)
    wait_completed(fal_api, submitted)
    result = fal_api.get(submitted["response_url"])
    assert result.status_code == 200
    data = result.json()
    assert data["seed"] == 7 and data["prompt"] == "two cats"
    assert len(data["images"]) == 2
    for image in data["images"]:
        assert image["content_type"] == "image/png"
        assert image["height"] > image["width"]  # portrait, scaled down
        png = httpx.get(image["url"]).raise_for_status().content  # no auth, like the CDN
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (image["width"], image["height"])


def test_video_result_is_an_mp4(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {"prompt": "waves"}, model=VIDEO_MODEL)
    assert submitted["response_url"].endswith(
        f"/fal-ai/kling-video/requests/{submitted['request_id']}"
    )
    wait_completed(fal_api, submitted)
    video = fal_api.get(submitted["response_url"]).json()["video"]
    assert video["content_type"] == "video/mp4" and video["file_name"].endswith(".mp4")
    content = httpx.get(video["url"]).raise_for_status().content
    assert content[4:8] == b"ftyp"
    assert len(content) == video["file_size"]


def test_queue_position_counts_requests_ahead(fal_api: httpx.Client) -> None:
    model = unique_app()
    ahead = [submit(fal_api, {}, model=model, faults={"stay_queued": True}) for _ in range(3)]
    assert [s["queue_position"] for s in ahead] == [0, 1, 2]
    assert fal_api.put(ahead[0]["cancel_url"]).status_code == 202
    assert status(fal_api, ahead[2]).json()["queue_position"] == 1
    for submitted in ahead[1:]:
        fal_api.put(submitted["cancel_url"])


def test_result_before_completion_is_refused(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"stay_queued": True})
    response = fal_api.get(submitted["response_url"])
    assert response.status_code == 400
    assert "in progress" in response.json()["detail"]
    fal_api.put(submitted["cancel_url"])


def test_cancel_a_queued_request(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"stay_queued": True})
    cancel = fal_api.put(submitted["cancel_url"])
    assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})

    after = status(fal_api, submitted)
    assert after.status_code == 200
    assert after.json()["status"] == "COMPLETED"
    assert after.json()["error_type"] == "request_cancelled"
    assert fal_api.get(submitted["response_url"]).status_code == 400

    again = fal_api.put(submitted["cancel_url"])
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})


def test_cancel_of_an_unknown_request(fal_api: httpx.Client) -> None:
    response = fal_api.put(f"/fal-ai/flux/requests/{uuid.uuid4()}/cancel")
    assert (response.status_code, response.json()) == (404, {"status": "NOT_FOUND"})


def test_a_runner_may_ignore_the_cancellation_signal(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"ignore_cancel": True, "run_seconds": 0.6})
    wait_status(fal_api, submitted, "IN_PROGRESS")
    assert fal_api.put(submitted["cancel_url"]).status_code == 202
    done = wait_completed(fal_api, submitted)
    assert "error" not in done
    assert fal_api.get(submitted["response_url"]).status_code == 200


def test_request_urls_need_the_right_app(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {})
    request_id = submitted["request_id"]
    # The subpath form is accepted too; another app's URL is not.
    assert fal_api.get(f"/fal-ai/flux/dev/requests/{request_id}/status").status_code in (200, 202)
    assert fal_api.get(f"/fal-ai/other/requests/{request_id}/status").status_code == 404
    assert fal_api.get(f"/fal-ai/flux/requests/{uuid.uuid4()}/status").status_code == 404


def test_key_auth(fal_url: str) -> None:
    url = f"{fal_url}/{IMAGE_MODEL}"
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={}, headers={"Authorization": "Key wrong"}).status_code == 401
    bearer = {"Authorization": f"Bearer {FAL_KEY}"}
    assert httpx.post(url, json={}, headers=bearer).status_code == 401
    # Files and the JWKS are public, like fal's CDN and rest.fal.ai.
    assert httpx.get(f"{fal_url}/.well-known/jwks.json").status_code == 200


def test_bad_input_is_a_422_in_fals_shape(fal_api: httpx.Client) -> None:
    not_json = fal_api.post(
        f"/{IMAGE_MODEL}", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert isinstance(not_json.json()["detail"], list)
    assert fal_api.post(f"/{IMAGE_MODEL}", json=[1, 2]).status_code == 422
    bad_fault = fal_api.post(f"/{IMAGE_MODEL}", json={"_emulator": {"no_such_fault": 1}})
    assert bad_fault.status_code == 422
    not_a_url = fal_api.post(f"/{IMAGE_MODEL}", json={}, params={"fal_webhook": "ftp://x"})
    assert not_a_url.status_code == 422
    assert fal_api.post("/just-one-segment", json={}).status_code == 404


def test_forced_completion_and_stats(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"stay_queued": True})
    forced = fal_api.post(
        f"/_emulator/requests/{submitted['request_id']}/complete",
        json={"outcome": "error", "error": "boom", "status_code": 422},
    )
    assert forced.json()["outcome"] == "error"
    result = fal_api.get(submitted["response_url"])
    assert result.status_code == 422 and result.json()["detail"][0]["msg"] == "boom"

    stats = wait_for(
        lambda: fal_api.get("/_emulator/stats").json(),
        lambda s: s["requests"]["result"] > 0,
        what="stats",
    )
    assert stats["requests"]["submit"] > 0
    assert stats["outcomes"]["error"] > 0
    assert set(stats["queue"]) == {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
