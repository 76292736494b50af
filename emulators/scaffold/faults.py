"""The fault switches every emulator has, and the engine that decides which calls they hit.

Call switches (`CallFaults`) hit the calls whose kind is in `errors_on` (kinds as the
emulator's `classify` names them: `create`, `get`, `list`, `file` ...):

- `rate_limits` / `server_errors` / `drop_connections`: the next N such calls get a 429, a 5xx,
  or a dropped connection; then calls go through again.
- `rate_limit_rate` / `server_error_rate` / `drop_connection_rate`: that fraction (0 to 1) of
  such calls, spread evenly rather than at random (0.25: every fourth call), so a test counts
  exactly what it caused.
- `latency_seconds`: such calls are answered this much later (the work is done at once).

A 429 or 5xx refuses the call before it does anything. A dropped connection happens after the
call did its work: a create made the job, but the client gets no answer, only a closed
connection (the status line goes out, the body never does).

Webhook switches (`WebhookFaults`, for emulators that send webhooks): `drop_webhooks`,
`duplicate_webhooks` (extra deliveries of each message), `webhook_delay_seconds` and
`reorder_webhooks` (see `scaffold.webhooks`).

Switches are given globally (`PUT /_emulator/faults`) or, where the protocol has a place for
them, per job (`input._emulator`); a per-job value wins over the global one field by field.
Per-job counts can't live on a job for its create call (none exists until a create succeeds),
so they count per identical request (`request_key`): a client that retries the same create
sees N failures, then a success. The job's later calls count on the job itself (`JobFaults`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from emulators.scaffold.stats import Stats

# Where `admit` leaves what happens after the call (latency, a drop) for the app's middleware.
AFTER_CALL = "emulator.after_call"

COUNTED = ("rate_limits", "server_errors", "drop_connections")
RATES = ("rate_limit_rate", "server_error_rate", "drop_connection_rate")
Outcome = Literal["rate_limited", "server_error", "drop"]
_OUTCOMES: tuple[Outcome, ...] = ("rate_limited", "server_error", "drop")


class CallFaults(BaseModel):
    """Switches on the emulator's own API calls. Defaults mean "behave like the real thing".

    Subclasses name their call kinds by redeclaring `errors_on` (a list of literals, with the
    default the protocol's create call, or every call for an API that creates nothing).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    errors_on: Sequence[str] = Field(default_factory=list)
    rate_limits: int = Field(default=0, ge=0)
    rate_limit_rate: float = Field(default=0, ge=0, le=1)
    server_errors: int = Field(default=0, ge=0)
    server_error_rate: float = Field(default=0, ge=0, le=1)
    drop_connections: int = Field(default=0, ge=0)
    drop_connection_rate: float = Field(default=0, ge=0, le=1)
    latency_seconds: float = Field(default=0, ge=0, le=600)
    # A 429's Retry-After (None: no header); `retry_after_header` off keeps it out of headers.
    retry_after_seconds: float | None = Field(default=1, ge=0)
    retry_after_header: bool = True

    def overridden_by(self, specific: Self) -> Self:
        """These faults with every field that `specific` set explicitly replaced."""
        return self.model_copy(update=specific.model_dump(include=specific.model_fields_set))


class WebhookFaults(CallFaults):
    """Call switches plus what can go wrong with the webhooks an emulator sends."""

    drop_webhooks: bool = False
    duplicate_webhooks: int = Field(default=0, ge=0)
    webhook_delay_seconds: float = Field(default=0, ge=0)
    reorder_webhooks: bool = False


F = TypeVar("F", bound=CallFaults)


@dataclass(frozen=True)
class Refusal:
    """A call answered with a 429 or a 5xx instead of its real answer; the protocol renders it."""

    outcome: Literal["rate_limited", "server_error"]
    faults: CallFaults  # the switches in force for the call (renderers read protocol fields)
    ordinal: int  # how many calls this engine has refused with this outcome, this one included

    @property
    def retry_after(self) -> float | None:
        return self.faults.retry_after_seconds

    def headers(self) -> dict[str, str] | None:
        """`Retry-After` in whole seconds, as HTTP wants it, where the switches ask for one."""
        seconds = self.faults.retry_after_seconds
        if not self.faults.retry_after_header or seconds is None:
            return None
        return {"retry-after": str(math.ceil(seconds))}


class CallRefused(Exception):
    """Raised by `FaultEngine.admit`; the app renders it with the protocol's `render_refusal`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.outcome)
        self.refusal = refusal


@dataclass(frozen=True)
class AfterCall:
    """What the middleware does to an admitted call's answer."""

    latency_seconds: float
    drop: bool


@dataclass
class JobFaults:
    """A job's own call switches (only those its create set explicitly), counted on the job."""

    errors_on: list[str] = field(default_factory=list)
    rate_limits: int = 0
    server_errors: int = 0
    drop_connections: int = 0
    rate_limit_rate: float = 0.0
    server_error_rate: float = 0.0
    drop_connection_rate: float = 0.0
    latency_seconds: float | None = None
    carry: dict[str, float] = field(default_factory=dict)  # the rates' running fractions


def request_key(*parts: Any) -> str:
    """A stable key for "the same request", independent of JSON key order."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _tick(carry: dict[str, float], name: str, rate: float) -> bool:
    """Whether this call is one of the `rate` fraction, spread evenly over the calls."""
    if rate <= 0:
        return False
    total = carry.get(name, 0.0) + rate
    hit = total >= 1 - 1e-9
    carry[name] = total - 1 if hit else total
    return hit


class FaultEngine(Generic[F]):
    """Global switches, the per-request counts of per-job create switches, and the decisions."""

    def __init__(self, model: type[F], stats: Stats) -> None:
        self.model = model
        self._stats = stats
        self.global_faults: F = model()
        self._seen: Counter[str] = Counter()  # per request key, for per-job create switches
        self._carry: dict[str, float] = {}  # global rates' running fractions
        self._key_carry: dict[str, dict[str, float]] = {}
        self._ordinals: Counter[str] = Counter()

    def replace(self, faults: F) -> None:
        self.global_faults = faults
        self._carry.clear()
        self._ordinals.clear()

    def reset(self) -> None:
        self.replace(self.model())
        self._seen.clear()
        self._key_carry.clear()

    def effective(self, specific: F | None) -> F:
        """The global switches with a job's own ones laid over them."""
        if specific is None:
            return self.global_faults.model_copy()
        return self.global_faults.overridden_by(specific)

    def for_job(self, specific: F | None) -> JobFaults:
        """The switches a new job counts on itself: those its create set explicitly."""
        if specific is None:
            return JobFaults()
        explicit = specific.model_fields_set
        job = JobFaults(errors_on=list(self.effective(specific).errors_on))
        for name in (*COUNTED, *RATES):
            if name in explicit:
                setattr(job, name, getattr(specific, name))
        if "latency_seconds" in explicit:
            job.latency_seconds = specific.latency_seconds
        return job

    def take(self, switch: str, key: str, specific: F | None) -> bool:
        """Count down an integer switch: per identical request if the job set it, else globally."""
        if specific is not None and switch in specific.model_fields_set:
            seen = self._seen[f"{switch}:{key}"]
            self._seen[f"{switch}:{key}"] += 1
            return bool(seen < getattr(specific, switch))
        left = getattr(self.global_faults, switch)
        if left > 0:
            setattr(self.global_faults, switch, left - 1)
            return True
        return False

    def admit(
        self,
        request: Request,
        kind: str,
        *,
        key: str | None = None,
        specific: F | None = None,
        job: JobFaults | None = None,
        job_switches: F | None = None,
    ) -> None:
        """Let a call of `kind` through, or raise `CallRefused` (a 429 or 5xx to answer).

        `key` and `specific` for a create (its per-job switches, counted per identical
        request); `job` for a call about an existing job (global switches first, then the
        job's own), with `job_switches` (all its switches) for the protocol to render the
        job's own refusals with. What happens after an admitted call is left for the middleware.
        """
        glob = self.global_faults
        explicit = specific.model_fields_set if specific is not None else set()
        outcome: Outcome | None = None
        decided_by: CallFaults = glob  # a refusal is rendered with the switches that caused it
        if specific is not None and key is not None:
            effective = self.effective(specific)
            if kind in effective.errors_on:
                outcome = self._per_request(key, specific, explicit)
                decided_by = effective
        if outcome is None and kind in glob.errors_on:
            outcome = self._global(explicit)
            decided_by = glob
        if outcome is None and job is not None and kind in job.errors_on:
            outcome = self._job(job)
            decided_by = job_switches or glob
        latency = self._latency(kind, explicit, specific, job)
        if latency > 0 or outcome == "drop":
            request.scope[AFTER_CALL] = AfterCall(latency, outcome == "drop")
        if outcome is None or outcome == "drop":
            return
        self._ordinals[outcome] += 1
        self._stats.count_fault(outcome)
        raise CallRefused(Refusal(outcome, decided_by, self._ordinals[outcome]))

    def _per_request(self, key: str, specific: F, explicit: Collection[str]) -> Outcome | None:
        if set(explicit) & set(COUNTED):
            seen = self._seen[key]
            self._seen[key] += 1
            bound = 0
            for name, outcome in zip(COUNTED, _OUTCOMES, strict=True):
                bound += getattr(specific, name) if name in explicit else 0
                if seen < bound:
                    return outcome
        carry = self._key_carry.setdefault(key, {})
        for name, outcome in zip(RATES, _OUTCOMES, strict=True):
            if name in explicit and _tick(carry, name, getattr(specific, name)):
                return outcome
        return None

    def _global(self, skip: Collection[str]) -> Outcome | None:
        glob = self.global_faults
        for name, outcome in zip(COUNTED, _OUTCOMES, strict=True):
            if name not in skip and getattr(glob, name) > 0:
                setattr(glob, name, getattr(glob, name) - 1)
                return outcome
        for name, outcome in zip(RATES, _OUTCOMES, strict=True):
            if name not in skip and _tick(self._carry, name, getattr(glob, name)):
                return outcome
        return None

    @staticmethod
    def _job(job: JobFaults) -> Outcome | None:
        for name, outcome in zip(COUNTED, _OUTCOMES, strict=True):
            if getattr(job, name) > 0:
                setattr(job, name, getattr(job, name) - 1)
                return outcome
        for name, outcome in zip(RATES, _OUTCOMES, strict=True):
            if _tick(job.carry, name, getattr(job, name)):
                return outcome
        return None

    def _latency(
        self, kind: str, explicit: Collection[str], specific: F | None, job: JobFaults | None
    ) -> float:
        if specific is not None and "latency_seconds" in explicit:
            if kind in self.effective(specific).errors_on:
                return specific.latency_seconds
            return 0.0
        if job is not None and job.latency_seconds is not None and kind in job.errors_on:
            return job.latency_seconds
        glob = self.global_faults
        return glob.latency_seconds if kind in glob.errors_on else 0.0
