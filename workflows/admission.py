"""AdmissionWorkflow: one per provider (`admission-{provider}`), deciding which queued media job
goes to the provider next.

A job asks for a slot before its submit (`request`, sent with signal-with-start by the job's
`admission.request` activity) and waits `queued` for the `admission_granted` signal; it gives
the slot back (`release`) once it leaves the provider, or withdraws from the line when it is
cancelled (or reaches its deadline) while queued.

Grant order (`next_grants`), rules that are easy to break:
- The lowest priority number first (0 interactive … 2 batch): batch work never holds back an
  interactive job in the same line.
- Within a priority, round-robin between users: the user whose last grant is oldest (or who
  never had one) goes first, so one user's flood waits behind everybody else's single jobs;
  a user's own jobs go in the order they asked.
- Never more than `max_active` jobs at the provider, nor `max_per_user` of one user (0: none).
- The last `reserve` free slots go only to users with no job at the provider: a flood stops
  short of the cap, so a newcomer's job starts at once instead of waiting for a release.
- Requests are idempotent by job id (an activity retried after a lost answer asks again; a
  holder asking again is granted again, since its grant may have been lost).
- A release is never lost for good: a job whose workflow ended without releasing (terminated,
  timed out) is found by `admission.ended`, asked about the holders on a slow timer.
- A provider's 429 pauses grants for its Retry-After (`pause`), so a storm slows every job
  down instead of burning each job's retries.
- State is one dataclass (AdmissionState) carried over continue-as-new when the history grows.
"""

from __future__ import annotations

import asyncio
import builtins
import heapq
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        ADMISSION_ENDED,
        ADMISSION_GRANTED_SIGNAL,
        ADMISSION_PAUSE_SIGNAL,
        ADMISSION_POSITION_QUERY,
        ADMISSION_RELEASE_SIGNAL,
        ADMISSION_REQUEST_SIGNAL,
        ADMISSION_WORKFLOW,
        AdmissionLimits,
        AdmissionRelease,
        AdmissionRequest,
        AdmissionState,
        AdmissionTicket,
        QueuePosition,
        media_job_workflow_id,
    )
    from workflows.policies import SWEEP_RETRY

# How often the holders are checked for workflows that ended without releasing their slot.
HOLDER_CHECK = timedelta(seconds=60)
# Histories recorded before this waited for a change with HOLDER_CHECK as the timeout: every
# workflow task cancelled one timer and started another (two events and the server's timer work
# for each request a flood sent), and a line that changed at least once a minute never checked
# its holders. Since, one timer runs while there are holders and the check follows it.
ONE_HOLDER_TIMER_PATCH = "one-holder-check-timer"
# Continue-as-new past this many history events (or when the server suggests it).
MAX_HISTORY_EVENTS = 5_000
# Pauses asked by a 429 are capped: a wrong Retry-After can't stop a provider's line for long.
MAX_PAUSE_SECONDS = 300.0


def _order_key(ticket: AdmissionTicket, last_grant: dict[str, int]) -> tuple[int, int, int]:
    return (ticket.priority, last_grant.get(ticket.user_id, -1), ticket.arrived)


def next_grants(
    waiting: list[AdmissionTicket],
    holders: list[AdmissionTicket],
    last_grant: dict[str, int],
    limits: AdmissionLimits,
    seq: int,
) -> tuple[list[AdmissionTicket], dict[str, int], int]:
    """The tickets to grant now, in order, with the users' last grants and the sequence after
    them. Pure: the workflow and the position query both use it."""
    active: dict[str, int] = {}
    for held in holders:
        active[held.user_id] = active.get(held.user_id, 0) + 1
    total = len(holders)
    last = dict(last_grant)
    left = list(waiting)
    granted: list[AdmissionTicket] = []
    # Past this many at the provider, only users with nothing there are granted.
    shared = limits.max_active - limits.reserve if limits.max_active > 0 else 0
    while left and (limits.max_active <= 0 or total < limits.max_active):
        open_ = [
            t
            for t in left
            if (limits.max_per_user <= 0 or active.get(t.user_id, 0) < limits.max_per_user)
            and (shared <= 0 or total < shared or not active.get(t.user_id))
        ]
        if not open_:
            break
        best = min(open_, key=lambda t: _order_key(t, last))
        left.remove(best)
        granted.append(best)
        seq += 1
        last[best.user_id] = seq
        active[best.user_id] = active.get(best.user_id, 0) + 1
        total += 1
    return granted, last, seq


def line_order(waiting: list[AdmissionTicket], last_grant: dict[str, int]) -> list[AdmissionTicket]:
    """The order `next_grants` would grant `waiting` in if every slot were free, in
    O(n log n): a user's tickets share their user's last grant, so only each user's best ticket
    competes, and a grant moves that user behind every other. The position query runs this on
    each read of a queued job; `next_grants` over a line of 3,000 took 0.6 s of the worker's
    event loop."""
    by_user: dict[str, list[AdmissionTicket]] = {}
    for ticket in sorted(waiting, key=lambda t: (t.priority, t.arrived), reverse=True):
        by_user.setdefault(ticket.user_id, []).append(ticket)  # best last: popped first
    heads = [(q[-1].priority, last_grant.get(u, -1), q[-1].arrived, u) for u, q in by_user.items()]
    heapq.heapify(heads)
    order: list[AdmissionTicket] = []
    seq = max([*last_grant.values(), -1])
    while heads:
        _, _, _, user = heapq.heappop(heads)
        queue = by_user[user]
        order.append(queue.pop())
        seq += 1
        if queue:
            heapq.heappush(heads, (queue[-1].priority, seq, queue[-1].arrived, user))
    return order


@workflow.defn(name=ADMISSION_WORKFLOW)
class AdmissionWorkflow:
    @workflow.init
    def __init__(self, state: AdmissionState) -> None:
        self._s = state
        self._changed = True
        self._regrant: list[str] = []
        self._sends: list[asyncio.Task[None]] = []
        self._check: asyncio.Task[None] | None = None  # the holder check's timer

    # --- messages ---------------------------------------------------------------------------

    @workflow.signal(name=ADMISSION_REQUEST_SIGNAL)
    def request(self, req: AdmissionRequest) -> None:
        s = self._s
        s.limits = req.limits  # the newest settings win
        if any(t.job_id == req.job_id for t in s.holders):
            self._regrant.append(req.job_id)
        elif not any(t.job_id == req.job_id for t in s.waiting):
            s.seq += 1
            s.waiting.append(AdmissionTicket(req.job_id, req.user_id, req.priority, s.seq))
        self._changed = True

    @workflow.signal(name=ADMISSION_RELEASE_SIGNAL)
    def release(self, rel: AdmissionRelease) -> None:
        self._drop({rel.job_id})

    @workflow.signal(name=ADMISSION_PAUSE_SIGNAL)
    def pause(self, seconds: float) -> None:
        until = workflow.now() + timedelta(seconds=min(max(seconds, 0.0), MAX_PAUSE_SECONDS))
        current = self._paused_until()
        if current is None or until > current:
            self._s.paused_until = until.isoformat()
        self._changed = True

    @workflow.query(name=ADMISSION_POSITION_QUERY)
    def position(self, job_id: str) -> QueuePosition:
        s = self._s
        granted = any(t.job_id == job_id for t in s.holders)
        place: int | None = None
        if not granted and any(t.job_id == job_id for t in s.waiting):
            # The order the line would be granted in if every slot were free.
            order = line_order(s.waiting, s.last_grant)
            place = next(i for i, t in enumerate(order, start=1) if t.job_id == job_id)
        return QueuePosition(
            position=place, granted=granted, waiting=len(s.waiting), active=len(s.holders)
        )

    # --- the line ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, state: AdmissionState) -> None:
        one_timer = workflow.patched(ONE_HOLDER_TIMER_PATCH)
        while not self._should_continue_as_new():
            paused = self._paused_until()
            if paused is not None and paused > workflow.now():
                await workflow.sleep(paused - workflow.now(), summary="provider asked us to wait")
                continue
            self._changed = False
            self._grant()
            if not one_timer:
                try:
                    await workflow.wait_condition(
                        lambda: self._changed,
                        timeout=HOLDER_CHECK if self._s.holders else None,
                        timeout_summary="check the holders are still running",
                    )
                except builtins.TimeoutError:
                    await self._drop_ended()
                continue
            if self._check is None and self._s.holders:
                self._check = asyncio.ensure_future(
                    workflow.sleep(HOLDER_CHECK, summary="check the holders are still running")
                )
            await workflow.wait_condition(lambda: self._changed or self._check_due())
            if self._check_due():
                self._check = None
                if self._s.holders:
                    await self._drop_ended()
        # Grants being sent finish first: a holder whose grant failed is dropped before the
        # state moves on.
        await asyncio.gather(*self._sends)
        workflow.continue_as_new(self._s)

    def _grant(self) -> None:
        s = self._s
        for job_id in self._regrant:
            self._send(job_id)
        self._regrant = []
        granted, s.last_grant, s.seq = next_grants(
            s.waiting, s.holders, s.last_grant, s.limits, s.seq
        )
        for ticket in granted:
            s.waiting.remove(ticket)
            s.holders.append(ticket)
            self._send(ticket.job_id)

    def _send(self, job_id: str) -> None:
        task = asyncio.ensure_future(self._signal_granted(job_id))
        self._sends.append(task)
        task.add_done_callback(self._sends.remove)

    async def _signal_granted(self, job_id: str) -> None:
        handle = workflow.get_external_workflow_handle(media_job_workflow_id(job_id))
        try:
            await handle.signal(ADMISSION_GRANTED_SIGNAL)
        except Exception:
            # Its workflow is gone (ended, terminated): the slot is free again.
            # It ended meanwhile (cancelled while its grant was on the way, terminated).
            workflow.logger.info("job %s: could not be granted; its slot is freed", job_id)
            self._drop({job_id})

    async def _drop_ended(self) -> None:
        ids = [t.job_id for t in self._s.holders]
        try:
            ended: list[str] = await workflow.execute_activity(
                ADMISSION_ENDED,
                ids,
                result_type=list[str],
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=SWEEP_RETRY,
                summary=f"check {len(ids)} holder(s)",
            )
        except ActivityError as err:
            workflow.logger.warning("could not check the holders: %s", err)
            return
        if ended:
            workflow.logger.warning("freeing the slots of ended jobs %s", ", ".join(ended))
            self._drop(set(ended))

    def _drop(self, job_ids: set[str]) -> None:
        s = self._s
        s.waiting = [t for t in s.waiting if t.job_id not in job_ids]
        s.holders = [t for t in s.holders if t.job_id not in job_ids]
        self._changed = True

    def _check_due(self) -> bool:
        return self._check is not None and self._check.done()

    def _paused_until(self) -> datetime | None:
        until = self._s.paused_until
        return datetime.fromisoformat(until) if until else None

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY_EVENTS
        )
