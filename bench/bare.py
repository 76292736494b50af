"""Bare limit of this machine: what the Temporal dev server and SDK do with a trivial workflow.

`BareWorkflow` (in `bench.bare_workflow`) waits for one signal, then runs one empty activity.
Its worker runs in a separate process with default (sandboxed) options, on the same dev server
as the stack under test:

    python -m bench.bare --temporal 127.0.0.1:7233 --task-queue bare-xyz

`measure()` is the driver, used by `bench/media_jobs.py`:
- throughput: `throughput_workflows` workflows, each started and signalled at once (at most
  `start_concurrency` start+signal calls at a time, every workflow in flight), completed
  workflows per second, wall time from the first start to the last result;
- signal→result latency, unloaded: workflows parked on their signal, signalled one after
  another; the time from sending the signal to holding the result (a result long poll is
  already open when the signal goes out);
- the same latency at half load: workflows started at half the measured throughput, each
  signalled `signal_lead_seconds` after its start (so starts and signals both arrive at that
  rate), latency as above.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bench.bare_workflow import BareWorkflow, noop
from bench.common import log, paced, summary_ms, wait_until
from bench.procs import CpuMeter
from devstack.processes import ManagedProcess

ROOT = Path(__file__).resolve().parent.parent
READY = "bare worker polling"


@dataclass
class BareSizes:
    throughput_workflows: int = 400
    start_concurrency: int = 50
    unloaded_samples: int = 50
    half_load_samples: int = 200
    signal_lead_seconds: float = 1.0
    warmup_workflows: int = 10


# --- the worker process ------------------------------------------------------------------------


async def run_worker(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow], activities=[noop]):
        print(f"{READY} {task_queue!r} at {address}", flush=True)
        await stop.wait()


def start_worker_process(address: str, task_queue: str, log_dir: Path) -> ManagedProcess:
    args = [sys.executable, "-m", "bench.bare", "--temporal", address, "--task-queue", task_queue]
    worker = ManagedProcess("bare-worker", args, log_dir=log_dir, cwd=ROOT).start()
    try:
        worker.wait_log(READY)
    except BaseException:
        worker.stop()
        raise
    return worker


# --- the driver --------------------------------------------------------------------------------


async def history_event_counts(handle: WorkflowHandle[Any, Any]) -> dict[str, int]:
    """Events of one workflow's history by type: the server work that workflow cost."""
    counts: dict[str, int] = {"total": 0}
    async for event in handle.fetch_history_events():
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
        counts[name] = counts.get(name, 0) + 1
        counts["total"] += 1
    return counts


class BareBench:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._run = uuid.uuid4().hex[:8]
        self._count = 0
        self.last: WorkflowHandle[Any, Any] | None = None

    async def start(self, label: str) -> WorkflowHandle[Any, Any]:
        self._count += 1
        self.last = await self._client.start_workflow(
            BareWorkflow.run,
            id=f"bare-{self._run}-{label}-{self._count}",
            task_queue=self._task_queue,
        )
        return self.last

    @staticmethod
    async def signal_to_result(handle: WorkflowHandle[Any, Any]) -> float:
        waiter = asyncio.ensure_future(handle.result())
        await asyncio.sleep(0)  # let the result long poll go out first
        started = time.perf_counter()
        await handle.signal(BareWorkflow.go)
        await waiter
        return time.perf_counter() - started

    async def throughput(self, count: int, concurrency: int) -> float:
        """Wall seconds for `count` workflows, each started and signalled at once."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(_: int) -> None:
            async with semaphore:
                handle = await self.start("tp")
                await handle.signal(BareWorkflow.go)
            await handle.result()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started

    async def latency_unloaded(self, samples: int) -> list[float]:
        handles = [await self.start("idle") for _ in range(samples)]
        await self._wait_parked(handles)
        return [await self.signal_to_result(handle) for handle in handles]

    async def latency_paced(self, samples: int, rate: float, lead: float) -> list[float]:
        async def one(_: int) -> float:
            handle = await self.start("paced")
            await asyncio.sleep(lead)
            return await self.signal_to_result(handle)

        return await paced(samples, rate, one)

    @staticmethod
    async def _wait_parked(handles: list[WorkflowHandle[Any, Any]], within: float = 60) -> None:
        """Until each workflow's first task completed (it is waiting for its signal)."""

        async def parked() -> bool:
            for handle in handles:
                info = (await handle.describe()).raw_description.workflow_execution_info
                if info.history_length < 4:  # started, task scheduled, started, completed
                    return False
            return True

        if not await wait_until(parked, within=within, interval=0.2):
            raise TimeoutError(f"bare workflows not parked on their signal after {within}s")


async def measure(
    client: Client,
    address: str,
    log_dir: Path,
    sizes: BareSizes,
    cpu_pids: dict[str, int],
) -> dict[str, Any]:
    """All bare figures, with the bare worker started and stopped around them."""
    task_queue = f"bare-{uuid.uuid4().hex[:8]}"
    worker = await asyncio.to_thread(start_worker_process, address, task_queue, log_dir)
    try:
        bench = BareBench(client, task_queue)
        await bench.throughput(sizes.warmup_workflows, sizes.start_concurrency)

        log(f"bare: throughput, {sizes.throughput_workflows} workflows")
        meter = CpuMeter({**cpu_pids, "bare_worker": worker.pid})
        wall = await bench.throughput(sizes.throughput_workflows, sizes.start_concurrency)
        cpu = meter.stop()
        per_s = sizes.throughput_workflows / wall
        assert bench.last is not None
        history = await history_event_counts(bench.last)
        log(f"bare: {per_s:.1f} workflows/s")

        log(f"bare: unloaded signal→result, {sizes.unloaded_samples} samples")
        unloaded = await bench.latency_unloaded(sizes.unloaded_samples)

        rate = per_s / 2
        log(f"bare: signal→result at {rate:.1f}/s, {sizes.half_load_samples} samples")
        half = await bench.latency_paced(sizes.half_load_samples, rate, sizes.signal_lead_seconds)
    finally:
        await asyncio.to_thread(worker.stop)
    return {
        "workflows_per_s": round(per_s, 2),
        "throughput": {
            "workflows": sizes.throughput_workflows,
            "start_concurrency": sizes.start_concurrency,
            "wall_s": round(wall, 2),
            "cpu_s": cpu,
            "cpu_ms_per_workflow": {
                name: round(1000 * seconds / sizes.throughput_workflows, 1)
                for name, seconds in cpu.items()
            },
        },
        "history_events_per_workflow": history,
        "signal_to_result_ms": {
            "unloaded": summary_ms(unloaded),
            "half_load": {**summary_ms(half), "rate_per_s": round(rate, 2)},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Worker of the bare bench (BareWorkflow)")
    parser.add_argument("--temporal", required=True, help="host:port of the Temporal server")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(run_worker(args.temporal, args.task_queue))


if __name__ == "__main__":
    main()
