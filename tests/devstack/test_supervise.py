"""`make up` supervises its processes: a crashed one comes back, one that keeps crashing stops
the stack. The last test runs `python -m devstack up` itself and SIGKILLs its worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT
from devstack.supervise import GaveUp, Supervisor, Watched


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sleeper(tmp_path: Path, name: str = "sleeper") -> ManagedProcess:
    args = [sys.executable, "-c", "import time; time.sleep(120)"]
    return ManagedProcess(name, args, log_dir=tmp_path).start()


def test_a_crashed_process_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    proc = sleeper(tmp_path)
    clock, lines = FakeClock(), list[str]()
    restarts: list[int] = []

    def restart() -> None:
        proc.start()
        restarts.append(proc.pid)

    supervisor = Supervisor(
        [Watched("sleeper", lambda: proc, restart)], say=lines.append, clock=clock
    )
    try:
        first = proc.pid
        proc.kill()
        supervisor.check()
        assert not restarts and "sleeper exited (code -9); restarting in 1s" in lines[0]
        clock.now += 1.0
        supervisor.check()
        assert restarts and proc.alive() and proc.pid != first
        assert lines[-1] == "sleeper restarted"
    finally:
        proc.stop()


def test_backoff_doubles_with_recent_crashes_and_is_capped() -> None:
    supervisor = Supervisor([], first_backoff=1.0, max_backoff=30.0)
    assert [supervisor.backoff(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_process_that_keeps_crashing_stops_the_stack(tmp_path: Path) -> None:
    proc = sleeper(tmp_path)
    clock = FakeClock()

    def restart() -> None:
        proc.start()
        proc.kill()  # it dies again straight away

    supervisor = Supervisor(
        [Watched("flaky", lambda: proc, restart)],
        say=lambda _: None,
        clock=clock,
        max_crashes=3,
        window_seconds=60.0,
    )
    proc.kill()
    with pytest.raises(GaveUp, match="flaky crashed 3 times"):
        for _ in range(10):
            supervisor.check()
            clock.now += 5.0
    proc.stop()


def test_crashes_outside_the_window_are_forgotten(tmp_path: Path) -> None:
    proc = sleeper(tmp_path)
    clock = FakeClock()

    def restart() -> None:
        proc.start()

    supervisor = Supervisor(
        [Watched("rare", lambda: proc, restart)],
        say=lambda _: None,
        clock=clock,
        max_crashes=2,
        window_seconds=60.0,
    )
    try:
        for _ in range(4):  # one crash every 100 s never adds up to two within 60 s
            proc.kill()
            supervisor.check()
            clock.now += 100.0
            supervisor.check()
            assert proc.alive()
    finally:
        proc.stop()


@pytest.mark.e2e
def test_make_up_restarts_a_killed_worker_and_keeps_serving() -> None:
    """`python -m devstack up` (what `make up` runs) on free ports: SIGKILL its worker, and the
    stack says why, starts a new worker and still finishes a job."""
    data = Path(tempfile.mkdtemp(prefix="autosync-up-"))
    ports = {
        name: str(free_port())
        for name in (
            "TEMPORAL_PORT", "TEMPORAL_UI_PORT", "API_PORT", "EMULATOR_PORT",
            "FAL_EMULATOR_PORT", "KIE_EMULATOR_PORT", "ERP_EMULATOR_PORT", "WORKER_METRICS_PORT",
        )
    }  # fmt: skip
    env = {**os.environ, **ports, "AUTOSYNC_DATA_DIR": str(data), "POLL_INTERVAL_SECONDS": "1"}
    for name in ("REPLICATE_API_TOKEN", "FAL_API_KEY", "KIE_API_KEY", "ERP_BASE_URL"):
        env.pop(name, None)
    out = data / "up.log"
    with out.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    try:
        wait_for(lambda: "autosync is up" in out.read_text(), 120, out)
        workers = [
            p for p in psutil.Process(up.pid).children() if "worker.py" in " ".join(p.cmdline())
        ]
        assert len(workers) == 1
        os.kill(workers[0].pid, signal.SIGKILL)
        wait_for(lambda: "worker restarted" in out.read_text(), 90, out)
        assert "worker exited (code -9)" in out.read_text()
        assert up.poll() is None, "the stack stopped instead of restarting the worker"
        headers = {"Authorization": "Bearer dev-key"}
        job = httpx.post(
            f"{api}/v1/jobs",
            headers=headers,
            json={"kind": "generation", "input": {"prompt": "after a crash"}},
            timeout=30,
        ).json()
        wait_for(
            lambda: (
                httpx.get(f"{api}/v1/jobs/{job['id']}", headers=headers).json()["status"]
                == "succeeded"
            ),
            60,
            out,
        )
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        shutil.rmtree(data, ignore_errors=True)


def wait_for(condition: object, within: float, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except (httpx.HTTPError, KeyError, FileNotFoundError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not reached within {within}s; make up said:\n{log.read_text()[-3000:]}")
