"""Fault switches of the KIE emulator that change API answers and task outcomes."""

from __future__ import annotations

import httpx
import pytest

from tests.emulators.kie_support import create, record, task_body, wait_state

pytest_plugins = ["tests.emulators.kie_fixtures"]


def create_answer(api: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return api.post("/api/v1/jobs/createTask", json=body)


def test_fail_ends_the_task_with_fail_code_and_message(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body({"fail": "content policy violation", "fail_code": "422"}))
    done = wait_state(kie_api, task_id)
    assert done["state"] == "fail"
    assert (done["failCode"], done["failMsg"]) == ("422", "content policy violation")
    assert done["resultJson"] == "" and done["completeTime"] is not None


def test_rate_limited_creates_succeed_on_the_n_plus_first_identical_try(
    kie_api: httpx.Client,
) -> None:
    body = task_body({"rate_limits": 2, "retry_after_seconds": 3})
    for _ in range(2):
        throttled = create_answer(kie_api, body)
        assert throttled.status_code == 200
        assert throttled.json()["code"] == 429
        assert throttled.headers["retry-after"] == "3"
    assert create_answer(kie_api, body).json()["code"] == 200
    # A different body has its own count.
    assert create_answer(kie_api, task_body({"rate_limits": 1})).json()["code"] == 429


def test_global_rate_limit_counts_down_on_any_create(kie_api: httpx.Client) -> None:
    kie_api.put("/_emulator/faults", json={"rate_limits": 2}).raise_for_status()
    assert create_answer(kie_api, task_body()).json()["code"] == 429
    assert kie_api.get("/_emulator/faults").json()["rate_limits"] == 1
    answer = create_answer(kie_api, task_body())
    assert answer.json()["code"] == 429 and "retry-after" not in answer.headers
    assert create_answer(kie_api, task_body()).json()["code"] == 200


@pytest.mark.parametrize("code", [500, 455])
def test_server_error_burst_on_create_then_success(kie_api: httpx.Client, code: int) -> None:
    body = task_body({"server_errors": 2, "server_error_code": code})
    assert [create_answer(kie_api, body).json()["code"] for _ in range(3)] == [code, code, 200]


def test_faults_on_record_info_per_task_and_global(kie_api: httpx.Client) -> None:
    faults = {"rate_limits": 1, "server_errors": 1, "errors_on": ["record"]}
    task_id = create(kie_api, task_body(faults))
    url = "/api/v1/jobs/recordInfo"
    codes = [kie_api.get(url, params={"taskId": task_id}).json()["code"] for _ in range(3)]
    assert codes == [429, 500, 200]

    kie_api.put(
        "/_emulator/faults",
        json={"server_errors": 1, "server_error_code": 455, "errors_on": ["record"]},
    ).raise_for_status()
    assert kie_api.get(url, params={"taskId": task_id}).json()["code"] == 455
    assert record(kie_api, task_id)["taskId"] == task_id


@pytest.mark.parametrize("code", [401, 402, 422, 433, 501, 505])
def test_reject_code_refuses_creates(kie_api: httpx.Client, code: int) -> None:
    answer = create_answer(kie_api, task_body({"reject_code": code}))
    assert answer.status_code == 200
    assert answer.json()["code"] == code and answer.json()["data"] is None
    assert answer.json()["msg"]


def test_global_faults_apply_to_new_tasks_and_per_task_wins(kie_api: httpx.Client) -> None:
    kie_api.put("/_emulator/faults", json={"fail": "global failure"}).raise_for_status()
    failing = create(kie_api, task_body())
    overridden = create(kie_api, task_body({"fail": None}))
    assert wait_state(kie_api, failing)["failMsg"] == "global failure"
    assert wait_state(kie_api, overridden)["state"] == "success"


def test_stay_waiting_until_forced_complete(kie_api: httpx.Client) -> None:
    stuck = create(kie_api, task_body({"stay_waiting": True}))
    normal = create(kie_api, task_body())
    wait_state(kie_api, normal)  # a task created later has already finished...
    assert record(kie_api, stuck)["state"] == "waiting"  # ...while this one never moved
    forced = kie_api.post(
        f"/_emulator/tasks/{stuck}/complete",
        json={"state": "fail", "failMsg": "forced", "failCode": "501"},
    ).json()
    assert (forced["state"], forced["failMsg"], forced["failCode"]) == ("fail", "forced", "501")
    again = kie_api.post(f"/_emulator/tasks/{stuck}/complete", json={"state": "success"}).json()
    assert again["state"] == "fail"  # terminal is final


def test_invalid_faults_are_a_validation_code(kie_api: httpx.Client) -> None:
    answer = create_answer(kie_api, task_body({"no_such_fault": True}))
    assert answer.json()["code"] == 422
    assert "_emulator" in answer.json()["msg"]
