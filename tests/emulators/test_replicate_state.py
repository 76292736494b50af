"""The state file, in-process: saving, loading, catching up with the clock, resending webhooks.

Downtime is simulated by moving every saved time back, so nothing here sleeps it out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators.replicate import persistence
from emulators.replicate.config import EmulatorConfig
from emulators.replicate.parsing import parse_create
from emulators.replicate.records import Record
from emulators.replicate.state import SAVE_INTERVAL_SECONDS, Emulator
from tests.emulators.support import VERSION, WebhookReceiver

TIME_FIELDS = ("created_at", "started_at", "completed_at", "deadline")
# How long a wait may take before the test says it hangs: a bound, not a speed.
BOUND_SECONDS = 10.0


@asynccontextmanager
async def running(state_file: Path, **settings: Any) -> AsyncIterator[Emulator]:
    """An emulator on `state_file`, started and closed as the app's lifespan does."""
    config = EmulatorConfig(state_file=str(state_file), **({"starting_seconds": 0.2} | settings))
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        emulator = Emulator(config, http)
        await emulator.start()
        try:
            yield emulator
        finally:
            await emulator.close()


def submit(
    emulator: Emulator,
    faults: dict[str, Any] | None = None,
    *,
    cancel_after: float | None = None,
    webhook: str | None = None,
) -> Record:
    payload: dict[str, Any] = {"num_outputs": 2}
    if faults is not None:
        payload["_emulator"] = faults
    body: dict[str, Any] = {"version": f"acme/sdxl:{VERSION}", "input": payload}
    if webhook is not None:
        body |= {"webhook": webhook, "webhook_events_filter": ["completed"]}
    request = parse_create(body, with_version=True)
    return emulator.create(
        request,
        kind="prediction",
        model="acme/sdxl",
        version=VERSION,
        base_url="http://emulator.test",
        cancel_after=cancel_after,
    )


def saved(state_file: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(state_file.read_text())
    return {record["id"]: record for record in data["records"]}


def move_back(state_file: Path, seconds: float) -> None:
    """Pretend the emulator has been down for `seconds` since it saved."""
    data = json.loads(state_file.read_text())
    for record in data["records"]:
        for name in TIME_FIELDS:
            if record[name] is not None:
                record[name] -= seconds
    state_file.write_text(json.dumps(data))


async def test_running_jobs_catch_up_with_the_clock(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with running(state) as first:
        ok = submit(first, {"processing_seconds": 1})
        failing = submit(first, {"processing_seconds": 1, "fail": "boom"})
        long = submit(first, {"processing_seconds": 1000})
        half = submit(first, {"processing_seconds": 150})
        stuck = submit(first, {"stay_starting": True})
        late = submit(first, {"processing_seconds": 1000}, cancel_after=2)
        never = submit(first, {"stay_starting": True}, cancel_after=2)
        first.remember_version("b" * 64, "acme/trained")
    # Closed right away: every job was saved while still `starting`.
    assert {r["status"] for r in saved(state).values()} == {"starting"}
    move_back(state, 100)
    before = saved(state)

    async with running(state) as second:

        def job(record: Record) -> Record:
            found = second.get(record.id)
            assert found is not None
            return found

        def due(record: Record, *steps: float) -> float:
            return float(before[record.id]["created_at"]) + sum(steps)

        assert job(ok).status == "succeeded"
        assert job(ok).completed_at == pytest.approx(due(ok, 0.2, 1))
        assert job(ok).output == job(ok).final_output and len(job(ok).output) == 2
        assert job(ok).published == set(job(ok).files)
        assert job(ok).logs.startswith("Using seed:") and "50/50" in job(ok).logs

        assert job(failing).status == "failed" and job(failing).error == "boom"

        assert job(long).status == "processing"
        assert job(long).started_at == pytest.approx(due(long, 0.2))
        assert job(long).output is None and not job(long).halfway

        assert job(half).status == "processing" and job(half).halfway
        assert job(half).output == job(half).final_output[:1]

        assert job(stuck).status == "starting"

        assert job(late).status == "canceled"
        assert job(late).completed_at == pytest.approx(due(late, 2))
        assert job(late).started_at == pytest.approx(due(late, 0.2))
        assert job(never).status == "aborted" and job(never).started_at is None

        assert second.model_for_version("b" * 64) == "acme/trained"
        restored = [e for e in job(ok).history if e["type"] == "restored"]
        assert [e["status"] for e in restored] == ["starting"]
        second.cancel(job(stuck))

    after = saved(state)
    assert after[stuck.id]["status"] == "canceled"
    assert after[long.id]["status"] == "processing"  # cancelled with the process, not finished


async def test_terminal_jobs_stay_and_their_files_expire_on_schedule(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with running(state, starting_seconds=0, processing_seconds=0) as first:
        short_lived = submit(first, {"file_ttl_seconds": 50})
        kept = submit(first, {"file_ttl_seconds": 1000})
        for record in (short_lived, kept):
            await record.done.wait()
    move_back(state, 100)
    async with running(state) as second:
        expired = second.get(short_lived.id)
        alive = second.get(kept.id)
        assert expired is not None and alive is not None
        assert expired.status == alive.status == "succeeded"
        assert expired.data_removed and expired.to_json()["output"] is None
        assert not alive.data_removed and alive.published == set(alive.files)
        assert alive.done.is_set()
    assert saved(state)[short_lived.id]["data_removed"] is True


async def test_an_undelivered_terminal_webhook_is_resent_with_the_same_id(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    state = tmp_path / "state.json"
    name = uuid.uuid4().hex
    receiver.answer(name, [500])
    # The first retry would only come after a minute: the restart comes first.
    async with running(state, processing_seconds=0, webhook_retry_delays=[60]) as first:
        job = submit(first, webhook=receiver.url(name))
        await job.done.wait()
        await asyncio.to_thread(receiver.wait_count, name, 1)  # the loop runs meanwhile
    assert saved(state)[job.id]["pending_webhook"] is not None

    async with running(state, webhook_retry_delays=[0.1]) as second:
        await asyncio.to_thread(receiver.wait_count, name, 2)
        # The receiver counts the request before the emulator has read its 200 and cleared the
        # record (CI once closed the emulator in between): wait for the emulator's own word.
        resending = second.get(job.id)
        assert resending is not None
        for _ in range(int(BOUND_SECONDS / 0.01)):
            if resending.pending_webhook is None:
                break
            await asyncio.sleep(0.01)
        assert resending.pending_webhook is None, "the emulator never settled the resent webhook"
    first_try, resent = receiver.deliveries(name)
    assert resent.webhook_id == first_try.webhook_id
    assert resent.body == first_try.body
    assert resent.json["status"] == "succeeded"
    assert saved(state)[job.id]["pending_webhook"] is None  # delivered: no third try next time


async def test_an_unreadable_state_file_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "records": [')
    with caplog.at_level(logging.WARNING, logger=persistence.__name__):
        async with running(state) as emulator:
            assert emulator.stats_extra()["predictions"]["starting"] == 0
            submit(emulator, {"stay_starting": True})
    assert "it does not parse" in caplog.text
    assert (tmp_path / "state.json.unreadable").read_text() == '{"format": 1, "records": ['
    assert len(saved(state)) == 1


async def test_a_state_that_cannot_be_resumed_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    async with running(state) as first:
        submit(first, {"processing_seconds": 1})
    data = json.loads(state.read_text())
    # Parses, but a training without its planned output can't be finished.
    data["records"][0] |= {"kind": "training", "final_output": None, "created_at": 0}
    state.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        async with running(state) as second:
            assert second.list("prediction") == second.list("training") == []
    assert "restoring it failed" in caplog.text
    assert (tmp_path / "state.json.unreadable").exists()
    assert saved(state) == {}


async def test_saves_are_debounced_and_the_last_one_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state.json"
    writes: list[float] = []
    real_write = persistence.StateFile.write

    def counting_write(self: persistence.StateFile, text: str) -> None:
        writes.append(time.monotonic())
        real_write(self, text)

    monkeypatch.setattr(persistence.StateFile, "write", counting_write)
    started = time.monotonic()
    async with running(state, starting_seconds=0, processing_seconds=0.2) as emulator:
        jobs = [submit(emulator) for _ in range(500)]
        for job in jobs:
            await job.done.wait()
    # Thousands of changes, yet at most one write per interval (plus the first and the last):
    # a bound on the number of writes, which grows with the run's length on a slow machine.
    intervals = math.ceil((time.monotonic() - started) / SAVE_INTERVAL_SECONDS)
    assert len(writes) <= intervals + 2
    assert {r["status"] for r in saved(state).values()} == {"succeeded"}
    assert len(saved(state)) == 500
