"""A real emulator process stopped and started again on the same state file.

Both runs use the same port, as `make up` does, so the output URLs saved in the jobs stay valid.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import ManagedProcess, free_port
from tests.emulators.conftest import EMULATOR_ENV, ROOT
from tests.emulators.support import (
    TOKEN,
    VERSION,
    WebhookReceiver,
    create,
    get,
    timeline,
    wait_status,
)


@contextmanager
def emulator(
    state_file: Path, port: int, log_dir: Path, name: str
) -> Iterator[tuple[ManagedProcess, httpx.Client]]:
    """The emulator as a child process on `state_file`; stopped (SIGTERM) on leaving."""
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "emulators.replicate", "--host", "127.0.0.1", "--port", str(port)],
        log_dir=log_dir,
        env={**EMULATOR_ENV, "REPLICATE_EMULATOR_STATE_FILE": str(state_file)},
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    with (
        process,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
        ) as client,
    ):
        process.wait_http(f"{url}/_emulator/health", timeout=30)
        yield process, client


def job(receiver: WebhookReceiver, hook: str, faults: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": f"acme/sdxl:{VERSION}",
        "input": {"prompt": "a lighthouse", "num_outputs": 2, "_emulator": faults},
        "webhook": receiver.url(hook),
        "webhook_events_filter": ["completed"],
    }


def saved_records(state_file: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(state_file.read_text())["records"]}


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_jobs_carry_on_after_a_graceful_restart(tmp_path: Path, receiver: WebhookReceiver) -> None:
    state = tmp_path / "emulator-state.json"
    port = free_port()
    hooks = {name: uuid.uuid4().hex for name in ("done", "due", "long", "stuck")}

    with emulator(state, port, tmp_path, "first") as (_, api):
        done = create(api, job(receiver, hooks["done"], {}))
        done_final = wait_status(api, done["id"])
        receiver.wait_count(hooks["done"], 1)
        done_file = f"/files/{done['id']}/out-1.png"
        done_bytes = api.get(done_file).content
        # `due` will have finished by the time the second process starts; `long` won't.
        due = create(api, job(receiver, hooks["due"], {"processing_seconds": 2}))
        long = create(api, job(receiver, hooks["long"], {"processing_seconds": 5}))
        stuck_faults = {"stay_starting": True, "server_errors": 2, "errors_on": ["get"]}
        stuck = create(api, job(receiver, hooks["stuck"], stuck_faults))
        assert api.get(f"/v1/predictions/{stuck['id']}").status_code == 500  # 1 of 2 used
        long_started = wait_status(api, long["id"], ("processing",))["started_at"]
    # SIGTERM: the lifespan shutdown wrote the final state.

    records = saved_records(state)
    assert records[due["id"]]["status"] in ("starting", "processing")
    assert records[long["id"]]["status"] == "processing"
    assert records[stuck["id"]]["job_faults"]["server_errors"] == 1
    assert receiver.deliveries(hooks["due"]) == []
    saved_due = records[due["id"]]
    # Processing began when the first process's runner got to it (late on a loaded machine), or,
    # if it was still starting, when it fell due: 0.2 s after creation (EMULATOR_ENV).
    began = saved_due["started_at"] or saved_due["created_at"] + 0.2
    due_at = began + 2
    time.sleep(max(0.0, due_at + 0.2 - time.time()))

    with emulator(state, port, tmp_path, "second") as (_, api):
        # Finished while we were down: terminal at once, dated when it was due, hook sent.
        due_now = get(api, due["id"])
        assert due_now["status"] == "succeeded"
        # Dated when it was due while the emulator was down, not when it restarted.
        completed_at = seconds(due_now["completed_at"])
        assert completed_at == pytest.approx(due_at, abs=0.01)
        assert len(due_now["output"]) == 2
        for url in due_now["output"]:
            assert api.get(url).status_code == 200
        [due_hook] = receiver.wait_count(hooks["due"], 1)
        assert due_hook.json == due_now
        restored = [e for e in timeline(api, due["id"])["events"] if e["type"] == "restored"]
        assert restored[0]["status"] in ("starting", "processing")

        # Terminal before the stop: unchanged, files still served.
        assert get(api, done["id"]) == done_final
        assert api.get(done_file).content == done_bytes

        # Still running: continues on its original clock and its terminal webhook arrives.
        long_final = wait_status(api, long["id"])
        assert long_final["status"] == "succeeded"
        assert long_final["started_at"] == long_started
        assert long_final["metrics"]["predict_time"] >= 4.9  # 5 s of processing, timestamps rounded
        [long_hook] = receiver.wait_count(hooks["long"], 1)
        assert long_hook.json["status"] == "succeeded"

        # Its per-prediction faults survived: one injected 500 left, and still never starts.
        assert api.get(f"/v1/predictions/{stuck['id']}").status_code == 500
        assert get(api, stuck["id"])["status"] == "starting"
        canceled = api.post(f"/v1/predictions/{stuck['id']}/cancel").json()
        assert canceled["status"] == "canceled" and canceled["started_at"] is None
        [stuck_hook] = receiver.wait_count(hooks["stuck"], 1)
        assert stuck_hook.json["status"] == "canceled"

        # The version named as `acme/sdxl:<id>` before the restart still resolves.
        assert create(api, {"version": VERSION, "input": {}})["model"] == "acme/sdxl"


def test_jobs_saved_before_a_crash_survive_it(tmp_path: Path, receiver: WebhookReceiver) -> None:
    state = tmp_path / "emulator-state.json"
    port = free_port()
    hooks = {name: uuid.uuid4().hex for name in ("stuck", "long")}

    with emulator(state, port, tmp_path, "crashing") as (process, api):
        stuck = create(api, job(receiver, hooks["stuck"], {"stay_starting": True}))
        long = create(api, job(receiver, hooks["long"], {"processing_seconds": 3}))
        time.sleep(1.6)  # saves trail changes by at most SAVE_INTERVAL_SECONDS
        process.kill()  # SIGKILL: no shutdown, only what was saved on the way

    with emulator(state, port, tmp_path, "after-crash") as (_, api):
        assert get(api, stuck["id"])["status"] == "starting"
        assert get(api, long["id"])["status"] in ("processing", "succeeded")
        assert wait_status(api, long["id"])["status"] == "succeeded"
        [long_hook] = receiver.wait_count(hooks["long"], 1)
        assert long_hook.json["status"] == "succeeded"
        canceled = api.post(f"/v1/predictions/{stuck['id']}/cancel").json()
        assert canceled["status"] == "canceled"
        receiver.wait_count(hooks["stuck"], 1)
