"""Fault switches of the Replicate emulator that change API answers and outcomes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.emulators.support import create, get, wait_status


def unique_body(faults: dict[str, Any]) -> dict[str, Any]:
    """A create body no other test sends (create faults count per identical body)."""
    return {"version": "acme/sdxl", "input": {"seed": uuid.uuid4().hex, "_emulator": faults}}


def test_fail_ends_the_prediction_failed(api: httpx.Client) -> None:
    job = create(api, unique_body({"fail": "CUDA out of memory"}))
    done = wait_status(api, job["id"])
    assert done["status"] == "failed"
    assert done["error"] == "CUDA out of memory"
    assert done["output"] is None
    assert "CUDA out of memory" in done["logs"]


def test_rate_limited_creates_succeed_on_the_n_plus_first_identical_try(api: httpx.Client) -> None:
    body = unique_body({"rate_limits": 2, "retry_after_seconds": 3})
    for _ in range(2):
        response = api.post("/v1/predictions", json=body)
        assert response.status_code == 429
        assert response.json() == {
            "detail": "Request was throttled. Your rate limit resets in ~3s.",
            "status": 429,
            "retry_after": 3,
        }
        assert response.headers["retry-after"] == "3"
    assert api.post("/v1/predictions", json=body).status_code == 201
    # A different body has its own count.
    assert api.post("/v1/predictions", json=unique_body({"rate_limits": 1})).status_code == 429


def test_rate_limit_without_retry_after_header(api: httpx.Client) -> None:
    body = unique_body({"rate_limits": 1, "retry_after_header": False})
    response = api.post("/v1/predictions", json=body)
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.json()["retry_after"] == 1


def test_global_rate_limit_counts_down(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"rate_limits": 2}).raise_for_status()
    body = {"version": "acme/sdxl", "input": {}}
    assert api.post("/v1/predictions", json=body).status_code == 429
    assert api.get("/_emulator/faults").json()["rate_limits"] == 1
    assert api.post("/v1/models/acme/other/predictions", json={"input": {}}).status_code == 429
    assert api.post("/v1/predictions", json=body).status_code == 201


def test_server_errors_on_create_then_success(api: httpx.Client) -> None:
    body = unique_body({"server_errors": 1})
    failed = api.post("/v1/predictions", json=body)
    assert failed.status_code == 500
    assert failed.json()["status"] == 500
    assert api.post("/v1/predictions", json=body).status_code == 201


def test_server_errors_on_get_and_cancel(api: httpx.Client) -> None:
    job = create(api, unique_body({"server_errors": 2, "errors_on": ["get", "cancel"]}))
    assert api.get(f"/v1/predictions/{job['id']}").status_code == 500
    assert api.post(f"/v1/predictions/{job['id']}/cancel").status_code == 500
    assert api.get(f"/v1/predictions/{job['id']}").status_code == 200

    api.put("/_emulator/faults", json={"server_errors": 1, "errors_on": ["get"]})
    assert api.get(f"/v1/predictions/{job['id']}").status_code == 500
    assert api.get(f"/v1/predictions/{job['id']}").status_code == 200


def test_global_faults_apply_to_new_predictions_and_per_prediction_wins(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"fail": "global failure"}).raise_for_status()
    failing = create(api, unique_body({}))
    overridden = create(api, unique_body({"fail": None}))
    assert wait_status(api, failing["id"])["error"] == "global failure"
    assert wait_status(api, overridden["id"])["status"] == "succeeded"
    assert api.delete("/_emulator/faults").json()["fail"] is None


def test_stay_starting_never_starts_until_canceled(api: httpx.Client) -> None:
    stuck = create(api, unique_body({"stay_starting": True}))
    normal = create(api, unique_body({}))
    wait_status(api, normal["id"])  # a prediction created later has already finished...
    assert get(api, stuck["id"])["status"] == "starting"  # ...while this one never started
    canceled = api.post(f"/v1/predictions/{stuck['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert canceled["started_at"] is None


def timed_download(api: httpx.Client, url: str) -> tuple[float, float, bytes, int]:
    """Seconds until the headers, seconds in all, the body and its Content-Length."""
    started = time.monotonic()
    with api.stream("GET", url) as response:
        assert response.status_code == 200
        headers_after = time.monotonic() - started
        body = response.read()
    return headers_after, time.monotonic() - started, body, int(response.headers["content-length"])


def test_file_delay_spreads_a_download_over_that_long(api: httpx.Client) -> None:
    job = create(api, unique_body({"file_delay_seconds": 1.0, "file_bytes": 200_000}))
    [url] = wait_status(api, job["id"])["output"]
    assert api.head(url).status_code == 200  # HEAD answers at once, no body to slow down
    headers_after, total, body, length = timed_download(api, url)
    assert total >= 0.8
    assert total - headers_after >= 0.5  # headers first, then the body takes the time
    assert len(body) == length == 200_000
    assert body.startswith(b"\x89PNG")


def test_global_file_delay_applies_to_new_predictions(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"file_delay_seconds": 0.5}).raise_for_status()
    job = create(api, unique_body({}))
    api.delete("/_emulator/faults").raise_for_status()  # already captured by the prediction
    [url] = wait_status(api, job["id"])["output"]
    _, total, body, length = timed_download(api, url)
    assert total >= 0.4
    assert len(body) == length
