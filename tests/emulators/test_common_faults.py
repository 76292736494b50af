"""The fault switches every emulator shares (`emulators/scaffold`), each seen at work on every
emulator as a real process, and the per-job listing of the provider jobs they created.

Switches are global here (`PUT /_emulator/faults`); the fixtures clear them after each test.
Counts are exact: rates are spread evenly over calls, not drawn at random.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.emulators.erp_support import TOKEN as ERP_TOKEN
from tests.emulators.erp_support import erp_process
from tests.emulators.fal_support import wait_completed
from tests.emulators.kie_support import task_body, wait_state
from tests.emulators.support import WebhookReceiver, running_emulator, wait_for, wait_status

pytest_plugins = ("tests.emulators.fal_fixtures", "tests.emulators.kie_fixtures")

Outcome = str  # "ok", "429", "5xx" or "drop"


@dataclass
class Target:
    """One emulator and one of its calls the switches hit by default."""

    name: str
    api: httpx.Client
    send: Callable[[httpx.Client, str | None], httpx.Response]  # (client, webhook URL)
    body_codes: bool = False  # KIE: errors are body codes under HTTP 200

    def call(self, hook: str | None = None) -> Outcome:
        try:
            response = self.send(self.api, hook)
        except httpx.TransportError:
            return "drop"
        status = response.json()["code"] if self.body_codes else response.status_code
        if status == 429:
            return "429"
        return "5xx" if status >= 500 else "ok"

    def faults(self, **switches: Any) -> None:
        self.api.put("/_emulator/faults", json=switches).raise_for_status()

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get("/_emulator/stats").json()
        return found


def _replicate(api: httpx.Client, hook: str | None) -> httpx.Response:
    body: dict[str, Any] = {"version": "acme/sdxl", "input": {"seed": uuid.uuid4().hex}}
    if hook:
        body |= {"webhook": hook, "webhook_events_filter": ["completed"]}
    return api.post("/v1/predictions", json=body)


def _fal(api: httpx.Client, hook: str | None) -> httpx.Response:
    params = {"fal_webhook": hook} if hook else None
    return api.post("/fal-ai/flux/dev", json={"seed": uuid.uuid4().hex}, params=params)


def _kie(api: httpx.Client, hook: str | None) -> httpx.Response:
    return api.post("/api/v1/jobs/createTask", json=task_body(callback=hook))


def _erp(api: httpx.Client, hook: str | None) -> httpx.Response:
    return api.get("/v1/companies/acme/views/vw_vendas/count")


def _pull(api: httpx.Client, hook: str | None) -> httpx.Response:
    return api.get("/api/client/sync-data")


@pytest.fixture(scope="module")
def erp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The default data window: it ends today (see test_erp_data_follows_the_calendar).
    process, url = erp_process("erp-common", tmp_path_factory.mktemp("erp-logs"))
    with process:
        process.wait_http(f"{url}/_emulator/health", timeout=30)
        yield url


@pytest.fixture(scope="module")
def pull_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"PULL_CLIENT_EMULATOR_SEED_RECORDS": "3"}
    with running_emulator("emulators.pull_client", env, tmp_path_factory.mktemp("pull")) as url:
        yield url


@pytest.fixture
def erp_api(erp_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ERP_TOKEN}"}
    with httpx.Client(base_url=erp_url, headers=headers, timeout=15) as client:
        yield client
        client.delete("/_emulator/faults").raise_for_status()


@pytest.fixture
def pull_api(pull_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pull_url, timeout=15) as client:
        yield client
        client.delete("/_emulator/faults").raise_for_status()


EVERY = ["replicate", "fal", "kie", "erp", "pull_client"]
PROVIDERS = ["replicate", "fal", "kie"]


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    name: str = request.param
    if name == "replicate":
        return Target(name, request.getfixturevalue("api"), _replicate)
    if name == "fal":
        return Target(name, request.getfixturevalue("fal_api"), _fal)
    if name == "kie":
        return Target(name, request.getfixturevalue("kie_api"), _kie, body_codes=True)
    if name == "erp":
        return Target(name, request.getfixturevalue("erp_api"), _erp)
    return Target(name, request.getfixturevalue("pull_api"), _pull)


@pytest.mark.parametrize("target", EVERY, indirect=True)
def test_counters_refuse_then_drop_then_let_calls_through(target: Target) -> None:
    before = target.stats()["faults"]
    target.faults(rate_limits=1, server_errors=2, drop_connections=1)
    assert [target.call() for _ in range(5)] == ["429", "5xx", "5xx", "drop", "ok"]
    left = target.api.get("/_emulator/faults").json()
    assert (left["rate_limits"], left["server_errors"], left["drop_connections"]) == (0, 0, 0)
    after = target.stats()["faults"]
    assert after["rate_limited"] - before["rate_limited"] == 1
    assert after["server_errors"] - before["server_errors"] == 2
    assert after["dropped_connections"] - before["dropped_connections"] == 1


@pytest.mark.parametrize("target", EVERY, indirect=True)
@pytest.mark.parametrize(
    ("switch", "rate", "expected"),
    [
        ("rate_limit_rate", 0.5, ["ok", "429", "ok", "429"]),
        ("server_error_rate", 0.25, ["ok", "ok", "ok", "5xx"]),
        ("drop_connection_rate", 0.5, ["ok", "drop", "ok", "drop"]),
    ],
)
def test_rates_hit_that_share_of_calls(
    target: Target, switch: str, rate: float, expected: list[str]
) -> None:
    target.faults(**{switch: rate})
    assert [target.call() for _ in range(4)] == expected


@pytest.mark.parametrize("target", EVERY, indirect=True)
def test_latency_delays_the_calls_it_hits(target: Target) -> None:
    before = target.stats()["faults"]["delayed"]
    target.faults(latency_seconds=0.05)
    assert [target.call() for _ in range(3)] == ["ok"] * 3
    assert target.stats()["faults"]["delayed"] - before == 3
    # The calls `errors_on` leaves out are not hit.
    kinds = {"replicate": "get", "fal": "status", "kie": "record"}
    if target.name in kinds:
        target.faults(latency_seconds=0.05, errors_on=[kinds[target.name]])
        target.call()
        assert target.stats()["faults"]["delayed"] - before == 3


# --- per-job listing ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", PROVIDERS, indirect=True)
def test_jobs_lists_every_provider_job_made_for_an_app_job(
    target: Target, receiver: WebhookReceiver
) -> None:
    job_id = uuid.uuid4().hex
    hook = f"{receiver.url(uuid.uuid4().hex)}?job_id={job_id}&token=t"
    target.faults(drop_connections=1)  # the create happens, its answer is lost
    assert target.call(hook) == "drop"
    listed = target.api.get("/_emulator/jobs", params={"job_id": job_id}).json()
    assert listed["count"] == 1
    assert target.call(hook) == "ok"  # the client tries again: a second provider job
    listed = target.api.get("/_emulator/jobs", params={"job_id": job_id}).json()
    assert listed["count"] == len(listed["provider_jobs"]) == 2
    assert len({job["id"] for job in listed["provider_jobs"]}) == 2
    assert target.api.get("/_emulator/jobs").json()["counts"][job_id] == 2
    nobody = target.api.get("/_emulator/jobs", params={"job_id": "nobody"}).json()
    assert nobody == {"job_id": "nobody", "count": 0, "provider_jobs": []}


# --- webhooks -----------------------------------------------------------------------------------


@dataclass
class Jobs:
    """Making, waiting for and forcing jobs of one provider, with per-job switches."""

    target: Target

    def start(self, hook: str, **faults: Any) -> str:
        api = self.target.api
        if self.target.name == "replicate":
            body = {
                "version": "acme/sdxl",
                "input": {"seed": uuid.uuid4().hex, "_emulator": faults},
                "webhook": hook,
                "webhook_events_filter": ["completed"],
            }
            response = api.post("/v1/predictions", json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])
        if self.target.name == "fal":
            body = {"seed": uuid.uuid4().hex, "_emulator": faults}
            response = api.post("/fal-ai/flux/dev", json=body, params={"fal_webhook": hook})
            assert response.status_code == 200, response.text
            return str(response.json()["request_id"])
        response = api.post("/api/v1/jobs/createTask", json=task_body(faults, callback=hook))
        assert response.json()["code"] == 200, response.text
        return str(response.json()["data"]["taskId"])

    def wait(self, job_id: str) -> None:
        api = self.target.api
        if self.target.name == "replicate":
            wait_status(api, job_id)
        elif self.target.name == "fal":
            base = f"{api.base_url}/fal-ai/flux/requests/{job_id}"
            wait_completed(api, {"request_id": job_id, "status_url": f"{base}/status"})
        else:
            wait_state(api, job_id)

    def stuck(self, hook: str) -> str:
        switch = {"replicate": "stay_starting", "fal": "stay_queued", "kie": "stay_waiting"}
        return self.start(hook, **{switch[self.target.name]: True})

    def finish(self, job_id: str) -> None:
        path, body = {
            "replicate": (f"predictions/{job_id}/complete", {"status": "succeeded"}),
            "fal": (f"requests/{job_id}/complete", {"outcome": "ok"}),
            "kie": (f"tasks/{job_id}/complete", {"state": "success"}),
        }[self.target.name]
        self.target.api.post(f"/_emulator/{path}", json=body).raise_for_status()

    def events(self, job_id: str) -> list[dict[str, Any]]:
        path = {"replicate": "predictions", "fal": "requests", "kie": "tasks"}[self.target.name]
        found: list[dict[str, Any]] = self.target.api.get(
            f"/_emulator/{path}/{job_id}/events"
        ).json()["events"]
        return found


def job_of(body: dict[str, Any]) -> str:
    """The provider job a webhook body is about, whichever provider sent it."""
    data = body.get("data", body)
    return str(data.get("id") or data.get("request_id") or data.get("taskId"))


@pytest.mark.parametrize("target", PROVIDERS, indirect=True)
def test_webhooks_dropped_duplicated_and_delayed(target: Target, receiver: WebhookReceiver) -> None:
    jobs = Jobs(target)
    before = target.stats()["webhooks"]
    dropped = jobs.start(receiver.url(name := uuid.uuid4().hex), drop_webhooks=True)
    jobs.wait(dropped)
    wait_for(
        lambda: jobs.events(dropped),
        lambda found: any(e["type"] == "webhook_dropped" for e in found),
        what="the dropped webhook",
    )
    twice = jobs.start(receiver.url(twice_hook := uuid.uuid4().hex), duplicate_webhooks=2)
    late = jobs.start(receiver.url(late_hook := uuid.uuid4().hex), webhook_delay_seconds=0.2)
    deliveries = receiver.wait_count(twice_hook, 3)
    assert len({d.body for d in deliveries}) == 1  # the same message three times
    assert job_of(deliveries[0].json) == twice
    assert job_of(receiver.wait_count(late_hook, 1)[0].json) == late
    assert receiver.deliveries(name) == []
    after = target.stats()["webhooks"]
    assert after["dropped"] - before["dropped"] == 1
    assert after["duplicates"] - before["duplicates"] == 2
    assert after["delayed"] - before["delayed"] == 1


@pytest.mark.parametrize("target", PROVIDERS, indirect=True)
def test_a_reordered_webhook_arrives_after_a_later_jobs(
    target: Target, receiver: WebhookReceiver
) -> None:
    jobs = Jobs(target)
    hook = receiver.url(uuid.uuid4().hex)
    later = jobs.stuck(hook)
    first = jobs.start(hook, reorder_webhooks=True)
    jobs.wait(first)  # done, its webhook held back
    wait_for(
        lambda: jobs.events(first),
        lambda found: any(e["type"] == "webhook_reordered" for e in found),
        what="the held webhook",
    )
    jobs.finish(later)
    deliveries = receiver.wait_count(hook.rsplit("/", 1)[-1], 2)
    assert [job_of(d.json) for d in deliveries] == [later, first]


# --- ERP data -------------------------------------------------------------------------------


def test_erp_data_follows_the_calendar(erp_api: httpx.Client) -> None:
    info = erp_api.get("/_emulator/info").json()
    today = dt.datetime.now(dt.UTC).date()
    assert dt.date.fromisoformat(info["data_end"]) in (today, today - dt.timedelta(days=1))
    start = dt.date.fromisoformat(info["data_start"])
    assert (dt.date.fromisoformat(info["data_end"]) - start).days == info["data_days"] - 1
    # What an incremental sync asks first (30 days back) finds rows, none updated later than now.
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
    params: dict[str, str | int] = {"updated_since": since, "limit": 1000}
    rows = erp_api.get("/v1/companies/acme/views/vw_vendas", params=params).json()["items"]
    assert rows
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        updated = dt.datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00"))
        assert dt.datetime.fromisoformat(since) < updated <= now


def test_pull_client_stats_count_calls_by_route_beside_its_identities(
    pull_api: httpx.Client,
) -> None:
    before = pull_api.get("/_emulator/stats").json()
    assert pull_api.get("/c/default/api/client/health").status_code == 200
    assert pull_api.get("/api/client/sync-data").status_code == 200
    after = pull_api.get("/_emulator/stats").json()
    assert after["requests"]["health"] == before["requests"]["health"] + 1
    assert after["requests"]["sync_data"] == before["requests"]["sync_data"] + 1
    assert after["clients"] >= 1 and after["client_requests"]["sync_data"] >= 1
