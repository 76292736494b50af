"""The trivial workflow of the bare bench: wait for one signal, run one empty activity, end.

Kept in its own module, free of anything but temporalio, because the worker's sandbox
re-imports it; `bench.bare` is its worker and driver.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bare.noop")
async def noop() -> None:
    """Does nothing: the bench measures the server and SDK round trips around it."""


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._go)
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
