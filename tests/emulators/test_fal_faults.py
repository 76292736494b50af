"""Fault switches of the fal emulator: 429s, 5xx bursts, expiry, large and slow files."""

from __future__ import annotations

import uuid

import httpx

from tests.emulators.fal_support import IMAGE_MODEL, status, submit, wait_completed

pytest_plugins = ("tests.emulators.fal_fixtures",)


def test_global_rate_limit_answers_429_with_retry_after(fal_api: httpx.Client) -> None:
    fal_api.put("/_emulator/faults", json={"rate_limits": 2, "retry_after_seconds": 3})
    answers = [fal_api.post(f"/{IMAGE_MODEL}", json={}) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert answers[0].headers["x-fal-error-type"] == "rate_limited"
    assert "detail" in answers[0].json()
    assert fal_api.get("/_emulator/faults").json()["rate_limits"] == 0


def test_per_request_faults_count_retries_of_the_same_submit(fal_api: httpx.Client) -> None:
    body = {
        "prompt": uuid.uuid4().hex,
        "_emulator": {"rate_limits": 1, "server_errors": 1, "retry_after_header": False},
    }
    answers = [fal_api.post(f"/{IMAGE_MODEL}", json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 500, 200]
    assert "retry-after" not in answers[0].headers
    assert "error_type" not in answers[1].json()  # a gateway error: clients retry it


def test_server_error_burst_on_status_and_result(fal_api: httpx.Client) -> None:
    faults = {"server_errors": 2, "errors_on": ["status", "result"]}
    submitted = submit(fal_api, {}, faults=faults)
    assert status(fal_api, submitted).status_code == 500
    assert fal_api.get(submitted["response_url"]).status_code == 500
    done = wait_completed(fal_api, submitted)
    assert done["status"] == "COMPLETED"
    assert fal_api.get(submitted["response_url"]).status_code == 200


def test_global_server_errors_hit_any_matching_call(fal_api: httpx.Client) -> None:
    fal_api.put("/_emulator/faults", json={"server_errors": 1, "errors_on": ["submit"]})
    assert fal_api.post(f"/{IMAGE_MODEL}", json={}).status_code == 500
    assert fal_api.post(f"/{IMAGE_MODEL}", json={}).status_code == 200


def test_a_platform_failure_shows_on_the_status_and_the_result(fal_api: httpx.Client) -> None:
    faults = {
        "fail": "Runner disconnected",
        "fail_status_code": 503,
        "fail_error_type": "runner_disconnected",
    }
    submitted = submit(fal_api, {}, faults=faults)
    done = wait_completed(fal_api, submitted)
    assert (done["error"], done["error_type"]) == ("Runner disconnected", "runner_disconnected")
    result = fal_api.get(submitted["response_url"])
    assert result.status_code == 503
    assert result.headers["x-fal-error-type"] == "runner_disconnected"
    assert result.headers["x-fal-request-id"] == submitted["request_id"]


def test_files_and_results_expire(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"file_ttl_seconds": 0, "result_ttl_seconds": 0})
    wait_completed(fal_api, submitted)
    result = fal_api.get(submitted["response_url"])
    assert result.status_code == 410
    file_url = f"/files/{submitted['request_id']}/image-0.png"
    assert fal_api.get(file_url).status_code == 404

    kept = submit(fal_api, {})
    wait_completed(fal_api, kept)
    url = fal_api.get(kept["response_url"]).json()["images"][0]["url"]
    assert httpx.get(url).status_code == 200
    fal_api.post(f"/_emulator/requests/{kept['request_id']}/expire").raise_for_status()
    assert httpx.get(url).status_code == 404
    assert fal_api.get(kept["response_url"]).status_code == 410


def test_large_and_slow_files_arrive_whole(fal_api: httpx.Client) -> None:
    size = 300_000
    submitted = submit(fal_api, {}, faults={"file_bytes": size, "file_delay_seconds": 0.3})
    wait_completed(fal_api, submitted)
    image = fal_api.get(submitted["response_url"]).json()["images"][0]
    head = httpx.head(image["url"])
    assert int(head.headers["content-length"]) == size
    content = httpx.get(image["url"], timeout=10).raise_for_status().content
    assert len(content) == size
    assert content.startswith(b"\x89PNG") and content.endswith(b"IEND\xaeB`\x82")


def test_files_of_failed_requests_are_not_served(fal_api: httpx.Client) -> None:
    submitted = submit(fal_api, {}, faults={"fail": "nope"})
    wait_completed(fal_api, submitted)
    assert fal_api.get(f"/files/{submitted['request_id']}/image-0.png").status_code == 404
