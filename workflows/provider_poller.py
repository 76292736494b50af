"""ProviderPollerWorkflow: one per provider account, the poll fallback of all its jobs at once.

Every `interval_seconds` one activity (`media.poll_provider`, activities.provider_poller) reads
the provider's jobs that are in flight and have been quiet a while, asks the provider about
them in bulk (Replicate: its list, 100 a page; fal and KIE: single reads, rate limited) and
signals `provider_event` to the jobs whose phase moved, the signal a webhook would have sent.
So the cost follows what is needed: while webhooks arrive few jobs are quiet; when they stop,
2,000 jobs cost a few list pages per interval instead of 2,000 timers, workflow tasks and GETs.
Each job keeps its own timer as the last resort (`PollPolicy.bulk_poller`).

Started by every worker that polls the media queue (one wins: `ensure_provider_pollers`); it
continues as new every `sweeps_per_run` sweeps. A failed sweep is logged and the next one runs.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        PROVIDER_POLL_SWEEP,
        PROVIDER_POLLER_WORKFLOW,
        PollSweepRequest,
        PollSweepResult,
        ProviderPollerInput,
    )
    from workflows.policies import SWEEP_RETRY, describe_failure

# A sweep longer than this (rate-limited single reads of thousands of jobs) is cut short; the
# next one picks up the jobs it did not reach.
SWEEP_TIMEOUT = timedelta(minutes=10)
SWEEP_HEARTBEAT = timedelta(seconds=60)
# The least wait between two sweeps, as a share of the interval, when a sweep ran long.
MIN_GAP_SHARE = 0.1


@workflow.defn(name=PROVIDER_POLLER_WORKFLOW)
class ProviderPollerWorkflow:
    def __init__(self) -> None:
        self._sweeps = 0
        self._last: PollSweepResult | None = None

    @workflow.query
    def last_sweep(self) -> PollSweepResult | None:
        return self._last

    @workflow.run
    async def run(self, poller: ProviderPollerInput) -> None:
        interval = timedelta(seconds=poller.interval_seconds)
        while self._sweeps < poller.sweeps_per_run:
            started = workflow.now()
            self._sweeps += 1
            try:
                self._last = await workflow.execute_activity(
                    PROVIDER_POLL_SWEEP,
                    PollSweepRequest(
                        provider=poller.provider, interval_seconds=poller.interval_seconds
                    ),
                    result_type=PollSweepResult,
                    start_to_close_timeout=SWEEP_TIMEOUT,
                    heartbeat_timeout=SWEEP_HEARTBEAT,
                    retry_policy=SWEEP_RETRY,
                    summary=f"poll {poller.provider}",
                )
                self._describe()
            except ActivityError as err:
                workflow.logger.warning(
                    "%s poller: sweep failed: %s", poller.provider, describe_failure(err)
                )
            spent = workflow.now() - started
            await workflow.sleep(max(interval - spent, interval * MIN_GAP_SHARE))
        workflow.continue_as_new(poller)

    def _describe(self) -> None:
        last = self._last
        if last is None:
            return
        workflow.set_current_details(
            f"sweep {self._sweeps}: {last.in_flight} in flight, {last.asked} asked in "
            f"{last.provider_calls} call(s), {last.signalled} signalled"
            + ("; webhooks arriving" if last.webhooks_arriving else "")
        )
