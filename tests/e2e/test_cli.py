"""The `autosync` CLI end to end: each command run as its own process (`python -m
autosync_client`, as the console script runs it) against the real API, worker, Temporal dev
server and emulators, configured by AUTOSYNC_URL / AUTOSYNC_API_KEY like a user's shell.

Routes that other work adds (rerun, bulk cancel and rerun, usage) are skipped until the API
has them, then tested here with the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from autosync_client.cli import EXIT_API_ERROR, EXIT_NOT_SUCCEEDED, EXIT_UNREACHABLE, EXIT_USAGE
from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY

# The CLI is a client of the HTTP API: the database and storage behind it don't change it.
pytestmark = [pytest.mark.e2e, LOCAL_ONLY]

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 180.0  # a hung command fails its test instead of the whole run
JOB_ORDER = ["queued", "submitted", "processing", "storing", "succeeded"]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


async def cli(e2e: E2E, *args: str, user: str = "alice", key: str | None = None) -> Ran:
    env = {
        **os.environ,
        "AUTOSYNC_URL": e2e.stack.api_url,
        "AUTOSYNC_API_KEY": key if key is not None else KEYS[user],
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autosync_client", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def has_route(e2e: E2E, method: str, path: str) -> bool:
    async with httpx.AsyncClient(base_url=e2e.stack.api_url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    return method.lower() in paths.get(path, {})


def in_order(statuses: list[str]) -> bool:
    ranks = [JOB_ORDER.index(s) for s in statuses]
    return ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


async def test_submit_watch_get(e2e: E2E) -> None:
    ran = await cli(e2e, "--json", "jobs", "submit", "generation", "-p", "a fox", "--watch")
    assert ran.code == 0, ran.err
    updates = ran.lines()
    statuses = [u["status"] for u in updates]
    assert statuses[-1] == "succeeded" and in_order(statuses), statuses
    # The first is the job as read; what followed came from the live stream.
    assert updates[0]["event_id"] is None
    assert any(u["event_id"] is not None for u in updates[1:]), updates
    job_id = updates[0]["id"]

    got = await cli(e2e, "--json", "jobs", "get", job_id)
    assert got.code == 0, got.err
    job = got.json()
    assert job["id"] == job_id and job["status"] == "succeeded" and job["outputs"]

    text = await cli(e2e, "jobs", "get", job_id)
    assert text.code == 0
    assert "succeeded" in text.out and job["outputs"][0]["url"] in text.out

    # A finished job's watch says so at once, by polling too.
    polled = await cli(e2e, "jobs", "watch", job_id, "--poll")
    assert polled.code == 0, polled.err
    assert "succeeded" in polled.out


async def test_submit_watch_as_text(e2e: E2E) -> None:
    ran = await cli(e2e, "jobs", "submit", "generation", "-i", '{"prompt": "an owl"}', "-w")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0].startswith("submitted ")
    assert any(line.split()[1:2] == ["succeeded"] for line in lines), ran.out
    assert "output" in ran.out


async def test_list_pages_and_shows_only_yours(e2e: E2E) -> None:
    made = []
    for prompt in ("one", "two", "three"):
        ran = await cli(e2e, "--json", "jobs", "submit", "generation", "-p", prompt, user="bob")
        assert ran.code == 0, ran.err
        made.append(ran.json()["id"])
    newest = await cli(e2e, "--json", "jobs", "list", "--limit", "2", user="bob")
    assert newest.code == 0, newest.err
    assert [j["id"] for j in newest.json()] == made[::-1][:2]
    every = await cli(e2e, "--json", "jobs", "list", "--all", user="bob")
    ids = [j["id"] for j in every.json()]
    assert set(made) <= set(ids) and len(ids) == len(set(ids))
    assert {j["user_id"] for j in every.json()} == {"bob"}
    alices = await cli(e2e, "--json", "jobs", "list", "--all")
    assert not set(made) & {j["id"] for j in alices.json()}
    text = await cli(e2e, "jobs", "list", "--limit", "3", user="bob")
    assert [line.split()[0] for line in text.out.splitlines()] == made[::-1]


async def test_cancel_reaches_the_job_and_watch_exits_non_zero(e2e: E2E) -> None:
    slow = json.dumps({"prompt": "fox", "_emulator": {"processing_seconds": 60}})
    ran = await cli(e2e, "--json", "jobs", "submit", "generation", "-i", slow)
    assert ran.code == 0, ran.err
    job_id = ran.json()["id"]
    cancel = await cli(e2e, "jobs", "cancel", job_id, "--reason", "from the cli")
    assert cancel.code == 0, cancel.err
    watched = await cli(e2e, "jobs", "watch", job_id)
    assert watched.code == EXIT_NOT_SUCCEEDED
    assert "canceled" in watched.out
    again = await cli(e2e, "jobs", "cancel", job_id)
    assert again.code == EXIT_API_ERROR
    assert f"job {job_id} is already canceled" in again.err and "409" in again.err


async def test_errors_exit_non_zero_with_the_apis_message(e2e: E2E) -> None:
    missing = "0" * 32
    ran = await cli(e2e, "jobs", "get", missing)
    assert ran.code == EXIT_API_ERROR
    assert f"job {missing} not found" in ran.err and "404" in ran.err
    wrong = await cli(e2e, "jobs", "list", key="not-a-key")
    assert wrong.code == EXIT_API_ERROR and "unknown API key" in wrong.err
    not_admin = await cli(e2e, "sync", "list")
    assert not_admin.code == EXIT_API_ERROR and "sync runs need an admin API key" in not_admin.err
    bad = await cli(e2e, "jobs", "submit", "portrait", "-p", "x")
    assert bad.code == EXIT_API_ERROR and "kind" in bad.err and "422" in bad.err
    no_key = await cli(e2e, "me", key="")
    assert no_key.code == EXIT_USAGE and "AUTOSYNC_API_KEY" in no_key.err
    no_input = await cli(e2e, "jobs", "submit", "generation")
    assert no_input.code == EXIT_USAGE and "--prompt" in no_input.err
    down = await cli(e2e, "--url", "http://127.0.0.1:9", "me")
    assert down.code == EXIT_UNREACHABLE and "could not reach" in down.err


async def test_sync_start_watch_logs_get(e2e: E2E) -> None:
    ran = await cli(
        e2e, "--json", "sync", "start", "acme", "--mode", "period", "--month", "2025-07",
        "-m", "vendas", "-m", "estoque", "--watch", user="admin",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    updates = ran.lines()
    run_id = updates[0]["run_id"]
    statuses = [u["status"] for u in updates if u["kind"] == "status"]
    assert statuses[-1] == "DONE", statuses
    modules = [u for u in updates if u["kind"] == "module"]
    assert {u["module"] for u in modules} == {"vendas", "estoque"}
    assert any(u["event_id"] is not None for u in modules)
    finals = {u["module"]: u["progress"] for u in modules}
    assert all(p["status"] == "done" and p["processed"] > 0 for p in finals.values()), finals
    streamed_logs = [u["log"]["message"] for u in updates if u["kind"] == "log"]
    assert streamed_logs

    logs = await cli(e2e, "--json", "sync", "logs", run_id, user="admin")
    assert logs.code == 0, logs.err
    messages = [line["message"] for line in logs.json()]
    assert set(streamed_logs) <= set(messages)
    text_logs = await cli(e2e, "sync", "logs", run_id, "--module", "vendas", user="admin")
    assert text_logs.code == 0 and "[vendas]" in text_logs.out and "[estoque]" not in text_logs.out

    got = await cli(e2e, "--json", "sync", "get", run_id, user="admin")
    run = got.json()
    assert run["status"] == "DONE"
    assert {m: run["modules"][m]["processed"] for m in finals} == {
        m: p["processed"] for m, p in finals.items()
    }
    listed = await cli(e2e, "--json", "sync", "list", "--company", "acme", user="admin")
    assert run_id in [r["id"] for r in listed.json()]


async def test_sync_cancel(e2e: E2E) -> None:
    async with httpx.AsyncClient(base_url=e2e.stack.erp_url or "") as erp:
        slowed = await erp.put("/_emulator/faults", json={"slow_page_seconds": 0.4})
        assert slowed.is_success  # a fault switch, so the run is still going when cancelled
        try:
            ran = await cli(
                e2e, "--json", "sync", "start", "acme", "--mode", "period",
                "--from", "2024-01-01", "--to", "2024-12-31", user="admin",
            )  # fmt: skip
            assert ran.code == 0, ran.err
            run_id = ran.json()["id"]
            cancel = await cli(e2e, "sync", "cancel", run_id, user="admin")
            assert cancel.code == 0, cancel.err
            watched = await cli(e2e, "sync", "watch", run_id, user="admin")
        finally:
            await erp.delete("/_emulator/faults")
    assert watched.code == EXIT_NOT_SUCCEEDED, watched.err
    assert "run CANCELED" in watched.out


async def test_schedule_lifecycle(e2e: E2E) -> None:
    async def schedules(*args: str) -> Ran:
        return await cli(e2e, "schedules", *args, user="admin")

    created = await schedules("create", "globex", "--every", "60", "--paused")
    assert created.code == 0, created.err
    assert "globex" in created.out and "paused" in created.out
    try:
        listed = await cli(e2e, "--json", "schedules", "list", user="admin")
        found = {s["company_id"]: s for s in listed.json()}
        assert found["globex"]["paused"] is True and found["globex"]["every_minutes"] == 60
        resumed = await schedules("resume", "globex")
        assert resumed.code == 0 and "active" in resumed.out
        paused = await schedules("pause", "globex")
        assert paused.code == 0 and "paused" in paused.out
        twice = await schedules("create", "globex", "--every", "5")
        assert twice.code == EXIT_API_ERROR and "already has a schedule" in twice.err
        triggered = await schedules("trigger", "globex")
        assert triggered.code == 0, triggered.err
        run = None
        for _ in range(300):
            runs = await cli(e2e, "--json", "sync", "list", "--company", "globex", user="admin")
            scheduled = [r for r in runs.json() if r["triggered_by"] == "schedule"]
            if scheduled and scheduled[0]["status"] in ("DONE", "FAILED", "CANCELED"):
                run = scheduled[0]
                break
            await asyncio.sleep(0.2)
        assert run is not None and run["status"] == "DONE", run
    finally:
        deleted = await schedules("delete", "globex")
    assert deleted.code == 0, deleted.err
    gone = await schedules("delete", "globex")
    assert gone.code == EXIT_API_ERROR and "company globex has no schedule" in gone.err


async def test_keys_create_list_revoke(e2e: E2E) -> None:
    created = await cli(e2e, "--json", "keys", "create", "carol", "cli test", user="admin")
    assert created.code == 0, created.err
    made = created.json()
    key, key_id = made["key"], made["id"]
    assert made["user_id"] == "carol" and made["is_admin"] is False
    who = await cli(e2e, "--json", "me", key=key)
    assert who.code == 0 and who.json()["user_id"] == "carol"
    listed = await cli(e2e, "keys", "list", "--user", "carol", user="admin")
    assert listed.code == 0 and key_id in listed.out and "active" in listed.out
    assert key not in listed.out
    revoked = await cli(e2e, "keys", "revoke", key_id, user="admin")
    assert revoked.code == 0 and "revoked" in revoked.out
    refused = await cli(e2e, "me", key=key)
    assert refused.code == EXIT_API_ERROR and "revoked API key" in refused.err
    as_text = await cli(e2e, "keys", "create", "carol", "second", user="admin")
    assert as_text.code == 0 and len(as_text.out.strip()) >= 32 and "not shown again" in as_text.err
    mine = await cli(e2e, "keys", "list", key=as_text.out.strip())
    assert mine.code == EXIT_API_ERROR and "api keys need an admin API key" in mine.err


async def test_rerun_links_the_new_job(e2e: E2E) -> None:
    if not await has_route(e2e, "POST", "/v1/jobs/{job_id}/rerun"):
        pytest.skip("POST /v1/jobs/{job_id}/rerun is not on this branch yet")
    ran = await cli(e2e, "--json", "jobs", "submit", "generation", "-p", "a hare", "--watch")
    job_id = ran.lines()[0]["id"]
    rerun = await cli(e2e, "--json", "jobs", "rerun", job_id, "-i", '{"prompt": "a hare, again"}')
    assert rerun.code == 0, rerun.err
    new = rerun.json()
    assert new["id"] != job_id and new["rerun_of"] == job_id
    assert new["input"]["prompt"] == "a hare, again"


async def test_bulk_cancel_by_ids(e2e: E2E) -> None:
    if not await has_route(e2e, "POST", "/v1/jobs/cancel"):
        pytest.skip("POST /v1/jobs/cancel is not on this branch yet")
    slow = json.dumps({"prompt": "fox", "_emulator": {"processing_seconds": 60}})
    ids = [
        (await cli(e2e, "--json", "jobs", "submit", "generation", "-i", slow)).json()["id"]
        for _ in range(2)
    ]
    started = await cli(e2e, "--json", "jobs", "cancel", *ids)
    assert started.code == 0, started.err
    batch = started.json()
    assert batch["matched"] == 2
    status = await cli(e2e, "--json", "jobs", "batch", batch["batch_id"])
    assert status.code == 0, status.err
    assert status.json()["id"] == batch["batch_id"] and status.json()["total"] == 2
    text = await cli(e2e, "jobs", "batch", batch["batch_id"])
    assert text.out.startswith(f"cancel batch {batch['batch_id']}: "), text.out
    for job_id in ids:
        watched = await cli(e2e, "--json", "jobs", "watch", job_id)
        assert watched.lines()[-1]["status"] == "canceled"


async def test_usage(e2e: E2E) -> None:
    if not await has_route(e2e, "GET", "/v1/usage"):
        pytest.skip("GET /v1/usage is not on this branch yet")
    ran = await cli(e2e, "--json", "usage", "--group-by", "kind")
    assert ran.code == 0, ran.err
    assert isinstance(ran.json(), dict)
    text = await cli(e2e, "usage", "--group-by", "provider")
    assert text.code == 0, text.err
    bad = await cli(e2e, "usage", "--group-by", "colour")
    assert bad.code == EXIT_API_ERROR and "group_by" in bad.err
