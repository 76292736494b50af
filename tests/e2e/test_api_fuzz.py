"""Property-based: every operation of the running API's own /openapi.json, fed by schemathesis
with data that fits the schema and data that breaks it, as an admin, as a user and with the
Authorization header schemathesis makes up. No answer may be a 5xx (Temporal is up in this
stack, so not even a 503), and every 4xx is the one error shape of `api.errors`.

Examples are derandomized: the same cases every run. Nothing is excluded: the WebSocket route
and the dashboard's files are not in the schema, and the SSE stream is only read when it is an
error (a 200 is closed at once)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, wait_job
from tests.e2e.test_sync_runs import start_run, wait_run
from tests.errors import error_of

pytestmark = pytest.mark.e2e

# Per operation and generation mode (and again with real ids): ~1,300 requests. Ten of each:
# the API has grown to ~60 operations, and twenty of each took ten minutes of CI on 2 cores.
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 10}
# Each recovery sweep is a workflow that checks every job: a few cover the route. A bulk
# rerun by an admin's empty filter doubles the stack's jobs: a few too.
FEWER = {
    ("POST", "/v1/recovery/trigger"): 3, ("POST", "/v1/recovery/check"): 3,
    ("POST", "/v1/jobs/rerun"): 3, ("POST", "/v1/jobs/cancel"): 3,
}  # fmt: skip
# Whose Authorization header a case carries; "generated" keeps what schemathesis made up.
CALLERS = ("admin", "alice", "admin", "alice", "generated")
REQUEST_TIMEOUT = 90.0  # a recovery sweep waits up to a minute for its report

ERROR_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": {"type": "string", "minLength": 1},
                "details": {"type": "object"},
            },
        }
    },
}
_ERROR_VALIDATOR = jsonschema.Draft202012Validator(ERROR_SHAPE)


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def problem_with(response: requests.Response) -> str | None:
    """Why this answer breaks the contract, or None."""
    if response.status_code >= 500:
        return f"answered {response.status_code}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    errors = [e.message for e in _ERROR_VALIDATOR.iter_errors(body)]
    return f"{response.status_code} not in the error shape: {errors}" if errors else None


def send(
    session: requests.Session, case: Case[Any], api_url: str, caller: str
) -> requests.Response:
    headers = {"Authorization": f"Bearer {KEYS[caller]}"} if caller in KEYS else None
    kwargs = case.as_transport_kwargs(base_url=api_url, headers=headers)
    for _ in range(5):
        # stream: an SSE 200 never ends, so only error bodies are read
        response = session.request(**kwargs, stream=True, timeout=REQUEST_TIMEOUT)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            response.close()
            return response
        response.content  # noqa: B018 - read it all now, then the connection is free
        if response.status_code != 429:
            return response
        # the per-key rate limit: wait as told, then ask again (the 429 is checked too)
        if problem_with(response) is not None:
            return response
        time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
    return response


def fuzz_operation(
    operation: APIOperation[Any, Any, Any, Any],
    api_url: str,
    session: requests.Session,
    tally: Tally,
    known: dict[str, Any],
) -> None:
    name = f"{operation.method.upper()} {operation.path}"
    fewer = FEWER.get((operation.method.upper(), operation.path))

    def check(case: Case[Any], caller: str) -> None:
        try:
            response = send(session, case, api_url, caller)
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
            return  # a header that no HTTP client would send
        tally.sent += 1
        tally.by_status[response.status_code] = tally.by_status.get(response.status_code, 0) + 1
        problem = problem_with(response)
        if problem is not None:
            body = case.body if not isinstance(case.body, schemathesis.core.NotSet) else None
            tally.problems.append(
                f"{name} as {caller}: {problem}\n    url={response.url}\n    body={body!r:.300}"
                f"\n    answer={response.text[:300]!r}"
            )

    def run(strategy: st.SearchStrategy[Case[Any]], examples: int) -> None:
        @settings(
            max_examples=examples,
            derandomize=True,  # the same cases on every run: CI stays stable
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking against a live server
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, caller=st.sampled_from(CALLERS))
        def one(case: Case[Any], caller: str) -> None:
            check(case, caller)

        try:
            one()
        except Unsatisfiable:
            pass  # e.g. no negative data for an operation whose every input is valid

    for example in operation.schema.get_strategies_from_examples(operation):
        run(example, 1)
    for mode, examples in EXAMPLES.items():
        run(operation.as_strategy(generation_mode=mode), fewer or examples)
    names = re.findall(r"{(\w+)}", operation.path)
    if names and all(n in known for n in names):
        # again on things that exist: made-up ids mostly stop at a 404
        fixed = {n: known[n] for n in names}
        for mode, examples in EXAMPLES.items():
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)
            run(strategy, fewer or examples)


def fuzz(api_url: str, known: dict[str, Any]) -> Tally:
    session = requests.Session()
    raw = session.get(f"{api_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(raw)
    tally = Tally()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema the API serves is a valid one
        fuzz_operation(result.ok(), api_url, session, tally, known)
    return tally


async def existing(e2e: E2E) -> dict[str, Any]:
    """Path parameters that name real things: a finished job with an output, a running sync
    run, a project, a company with a schedule."""
    async with e2e.api("alice") as alice, e2e.api("admin") as admin:
        content = {"nodes": [{"id": "n1", "type": "image", "data": {}}]}
        project = (await alice.post("/v1/projects", json={"content": content})).json()
        job = await create(alice, project_id=project["id"], node_id="n1")
        await wait_job(alice, job["id"])
        run = await start_run(admin, company_id="globex", month="2024-12")
        schedule = await admin.post(
            "/v1/schedules", json={"company_id": "globex", "every_minutes": 60, "paused": True}
        )
        assert schedule.status_code == 201, schedule.text
    return {"job_id": job["id"], "index": 0, "project_id": project["id"], "run_id": run["id"],
            "company_id": "globex", "provider": "replicate"}  # fmt: skip


async def clean_up(e2e: E2E) -> None:
    """Leave the shared stack as the other tests expect it: no schedules, no runs or jobs still
    going that the fuzzing started."""
    async with e2e.api("admin") as admin:
        for schedule in (await admin.get("/v1/schedules")).json():
            await admin.delete(f"/v1/schedules/{schedule['company_id']}")
        for status in ("QUEUED", "RUNNING"):
            runs = (await admin.get("/v1/sync-runs", params={"status": status})).json()
            for run in runs["items"]:
                await admin.post(f"/v1/sync-runs/{run['id']}/cancel")
        for status in ("queued", "submitted", "processing"):  # an admin lists every user's
            jobs = (await admin.get("/v1/jobs", params={"status": status, "limit": 100})).json()
            for job in jobs["items"]:
                await admin.post(f"/v1/jobs/{job['id']}/cancel")
        for _ in range(600):
            active = []
            for status in ("QUEUED", "RUNNING"):
                runs = (await admin.get("/v1/sync-runs", params={"status": status})).json()
                active += runs["items"]
            if not active:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"sync runs the fuzzing started never ended: {active}")


@LOCAL_ONLY
async def test_no_input_gets_a_5xx_and_every_error_has_one_shape(e2e: E2E) -> None:
    try:
        known = await existing(e2e)
        tally = await asyncio.to_thread(fuzz, e2e.stack.api_url, known)
    finally:
        await clean_up(e2e)
    print(f"fuzzed: {tally.sent} requests, by status {sorted(tally.by_status.items())}")
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert tally.sent > 500, tally  # the schema really was walked
    assert any(200 <= s < 300 for s in tally.by_status), tally.by_status  # and got past auth


@LOCAL_ONLY
async def test_schedule_calls_racing_its_delete_never_5xx(e2e: E2E) -> None:
    """Each round: a fresh paused schedule, then PATCH, DELETE, pause and resume at once."""
    allowed: dict[str, set[int]] = {
        "patch": {200, 404}, "delete": {204, 404}, "pause": {200, 404}, "resume": {200, 404}
    }  # fmt: skip
    async with e2e.api("admin") as admin:
        calls: dict[str, Callable[[], Any]] = {
            "patch": lambda: admin.patch("/v1/schedules/globex", json={"every_minutes": 30}),
            "delete": lambda: admin.delete("/v1/schedules/globex"),
            "pause": lambda: admin.post("/v1/schedules/globex/pause"),
            "resume": lambda: admin.post("/v1/schedules/globex/resume"),
        }
        try:
            for _ in range(8):
                created = await admin.post(
                    "/v1/schedules",
                    json={"company_id": "globex", "every_minutes": 60, "paused": True},
                )
                assert created.status_code == 201, created.text
                answers: list[httpx.Response] = await asyncio.gather(
                    *(call() for call in calls.values())
                )
                for (what, _), response in zip(calls.items(), answers, strict=True):
                    assert response.status_code in allowed[what], (what, response.text)
                    if response.status_code == 404:
                        assert error_of(response)["code"] == "not_found"
                await admin.delete("/v1/schedules/globex")  # gone already, or now
        finally:
            await admin.delete("/v1/schedules/globex")


async def test_what_the_fuzzing_found_stays_a_422(e2e: E2E) -> None:
    """Each of these was a 500: a cursor with a naive time; ids past what SQLite compares (an
    OverflowError in the driver); a NUL anywhere PostgreSQL meets it; a lone surrogate in a
    job's input (no UTF-8 form, on any database)."""
    naive = base64.urlsafe_b64encode(b"2024-01-01T00:00:00|x").decode().rstrip("=")
    surrogate = b'{"kind": "generation", "input": {"prompt": "\\ud800"}}'
    json_type = {"content-type": "application/json"}
    async with e2e.api("admin") as admin:
        run = await start_run(admin, company_id="globex", month="2024-11")
        try:
            logs = f"/v1/sync-runs/{run['id']}/logs"
            answers = [
                await admin.get("/v1/jobs", params={"cursor": naive}),
                await admin.get("/v1/sync-runs", params={"cursor": naive}),
                await admin.get(logs, params={"after": 2**63}),
                await admin.get(logs, params={"after": 10**40}),
                await admin.get("/v1/events", params={"after": 2**63}),
                await admin.get("/v1/events", headers={"Last-Event-ID": str(10**40)}),
                await admin.get("/v1/schedules/caf\u00e9"),
                await admin.get("/v1/sync-runs/a%00b"),
                await admin.get(f"{logs}?module=%00"),
                await admin.get("/v1/sync-runs", params={"company_id": "\x00"}),
                await admin.get("/v1/projects/%00"),
                await admin.get("/v1/events", params={"topic": "project:\x00"}),
                await admin.post("/v1/projects", json={"name": "\x00", "content": {}}),
                await admin.post("/v1/jobs", content=surrogate, headers=json_type),
            ]
        finally:
            await admin.post(f"/v1/sync-runs/{run['id']}/cancel")
            await wait_run(admin, run["id"])
    for response in answers:
        assert response.status_code == 422, (response.request.url, response.text)
        assert error_of(response)["code"] == "validation_error"
