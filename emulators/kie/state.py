"""The emulator's memory: tasks, the coroutines that move them through their states, expiry.

Everything runs on the server's single event loop, so state changes between two `await`s are
atomic and no locks are needed. Every transition to a terminal state goes through `finish`,
which is idempotent: a forced completion and the normal end can race safely.

Lifecycles are laid out on the emulator's `Clock` from each task's `createTime`, so moving the
clock forward (`POST /_emulator/clock`) moves every task forward too. Tasks live in memory only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

from emulators.kie.callbacks import callback_message
from emulators.kie.clock import Clock
from emulators.kie.config import EmulatorConfig
from emulators.kie.models import ALL_STATES, Faults, State
from emulators.kie.outputs import is_video_model, plan_outputs
from emulators.kie.records import Task, credits_for, new_task_id
from emulators.scaffold.emulator import EmulatorBase
from emulators.scaffold.inputs import FromInput, render
from emulators.scaffold.jobs import ProviderJob
from emulators.scaffold.stats import WEBHOOK_COUNTERS
from emulators.scaffold.webhooks import WebhookSender

REQUEST_KINDS = ("create", "record", "file", "other")


class Emulator(EmulatorBase[EmulatorConfig, Faults]):
    """An in-memory KIE account."""

    def __init__(self, config: EmulatorConfig, http: httpx.AsyncClient) -> None:
        super().__init__(
            config,
            Faults,
            request_kinds=REQUEST_KINDS,
            webhook_counters=(*WEBHOOK_COUNTERS, "lies"),
        )
        self.clock = Clock()
        self.http = http
        # KIE's body-level `code` of every API answer (200 included).
        self.codes: Counter[str] = Counter()
        self.callbacks = WebhookSender(
            http, self.stats, self.tasks, config.callback_retry_delays, clock=self.clock
        )
        self._records: dict[str, Task] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}

    # -- queries -------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._records.get(task_id)

    def stats_extra(self) -> dict[str, Any]:
        """Body-level codes of the API's answers and tasks by state."""
        counts = Counter(task.state for task in self._records.values())
        return {
            "codes": dict(sorted(self.codes.items())),
            "tasks": {state: counts[state] for state in ALL_STATES},
        }

    def provider_jobs(self) -> Iterable[ProviderJob]:
        return (ProviderJob(t.id, t.callback_url, t.state, False) for t in self._records.values())

    def file_available(self, task: Task, name: str) -> bool:
        """Served only after success and until the task's result URLs expire."""
        if task.state != "success" or name not in task.files:
            return False
        if not task.files_removed and task.completed_at is not None:
            if self.clock.now() >= task.completed_at + task.file_ttl_seconds:
                task.files_removed = True
                task.history.append({"type": "files_expired", "time": self.clock.now()})
        return not task.files_removed

    # -- commands ------------------------------------------------------------------------

    def create(
        self,
        *,
        model: str,
        payload: dict[str, Any],
        callback_url: str | None,
        base_url: str,
        specific: Faults | None,
    ) -> Task:
        faults = self.faults.effective(specific)
        task_id = new_task_id()
        config = self.config
        generating = config.video_generating_seconds if is_video_model(model) else None
        now = self.clock.now()
        output = plan_outputs(task_id, model, payload, faults.file_bytes)
        task = Task(
            id=task_id,
            model=model,
            input=payload,
            callback_url=callback_url,
            base_url=base_url,
            faults=faults,
            files=output.files,
            created_at=now,
            updated_at=now,
            waiting_seconds=_pick(faults.waiting_seconds, config.waiting_seconds),
            queuing_seconds=_pick(faults.queuing_seconds, config.queuing_seconds),
            generating_seconds=_pick(
                faults.generating_seconds, generating, config.generating_seconds
            ),
            file_ttl_seconds=_pick(faults.file_ttl_seconds, config.file_ttl_seconds),
            credits=credits_for(is_video_model(model), len(output.files)),
        )
        task.job_faults = self.faults.for_job(specific)
        self._records[task_id] = task
        self._note(task)
        self._runners[task_id] = self.tasks.spawn(self._run(task), name=f"lifecycle-{task_id}")
        if output.source is None:
            task.rendered.set()
        else:
            self.tasks.spawn(self._render(task, output.source), name=f"render-{task_id}")
        return task

    def finish(
        self, task: Task, state: State, fail_msg: str | None = None, fail_code: str | None = None
    ) -> bool:
        """Make the task terminal and send its callback; False if it already was."""
        if task.terminal:
            return False
        now = self.clock.now()
        if task.started_at is None:
            task.started_at = now
        task.state = state
        task.completed_at = now
        task.updated_at = now
        if state == "fail":
            task.fail_msg = fail_msg or "Generation failed, please try again later"
            task.fail_code = fail_code or task.faults.fail_code
        self._note(task)
        task.done.set()
        runner = self._runners.pop(task.id, None)
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
        if task.callback_url is not None:
            if (
                self.callbacks.send(callback_message(self.config, task))
                and task.faults.lie_in_callback
            ):
                self.stats.webhooks["lies"] += 1
        return True

    def expire_files(self, task: Task) -> None:
        """Remove the result files now, as the 24-hour retention would."""
        if not task.files_removed:
            task.files_removed = True
            task.history.append({"type": "files_expired", "time": self.clock.now()})

    def forget(self) -> None:
        """Forget every task and body code, and put the clock back."""
        self._records.clear()
        self._runners.clear()
        self.codes.clear()
        self.callbacks.forget()
        self.clock.reset()

    # -- lifecycle -----------------------------------------------------------------------

    async def _run(self, task: Task) -> None:
        if task.faults.stay_waiting:
            await asyncio.Event().wait()  # until forced terminal or reset
        queued_at = task.created_at + task.waiting_seconds
        await self.clock.sleep_until(queued_at)
        self._move(task, "queuing")
        started_at = queued_at + task.queuing_seconds
        await self.clock.sleep_until(started_at)
        task.started_at = self.clock.now()
        self._move(task, "generating")
        await self.clock.sleep_until(started_at + task.generating_seconds)
        await task.rendered.wait()
        if task.faults.fail:
            self.finish(task, "fail", task.faults.fail)
        else:
            self.finish(task, "success")

    async def _render(self, task: Task, source: FromInput) -> None:
        """Make the task's PNGs from its input image (see `scaffold.inputs`)."""
        task.files, entry = await render(self.http, task.files, source)
        task.history.append({**entry, "time": self.clock.now()})
        task.rendered.set()

    def _move(self, task: Task, state: State) -> None:
        task.state = state
        task.updated_at = self.clock.now()
        self._note(task)

    def _note(self, task: Task) -> None:
        task.history.append({"type": "state", "state": task.state, "time": self.clock.now()})


def _pick(*values: float | None) -> float:
    """The first value that is set."""
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")
