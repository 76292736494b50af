"""What the recovery sweep looks for, and the seed's legacy rules for jobs without a kind.

The sweep (RecoveryWorkflow, on a Temporal Schedule; also `POST /v1/recovery/...`) finds:

- `unfinished`: a job not finished in our records whose workflow still runs, older than the
  minimum age: the provider is asked, and a job it has finished is handed to the workflow as
  a webhook would (`nudge`), so a lost webhook never waits for a slow poll;
- `stranded`: a job not finished in our records whose workflow is gone: a new workflow
  adopts the provider job and follows it to the end (`adopt`); a queued job whose workflow
  was never started (Temporal was down when it was created) is started with the input the
  API would have used (`start`), or failed with the reason when it can't be; one whose
  workflow ended before it reached a provider is failed (`fail`);
- `store_failed`: a job that failed although the provider had succeeded (its outputs could
  not be stored in time): copied again while its URLs live (`restore`);
- `objects_missing`: a succeeded job whose stored objects are gone: copied again (`restore`).

When every output URL of a job to restore has expired, it is marked `needs_regeneration` with
the reason. Every action is recorded in `recovery_attempts`.

Sweeps may overlap (two schedules, a manual trigger): each claims a job before acting on it,
so no action is taken twice, and statuses only move forward: a restore leaves the job's
status as it is (`restoring`) until the restored copy records it succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.contracts import JobKind

# Seed 001: before jobs carried an operation type, the prompt's prefix said what it was.
LEGACY_PREFIXES = (
    ("[EDITED]", JobKind.EDIT),
    ("[UPSCALED]", JobKind.UPSCALE),
    ("[VIDEO]", JobKind.VIDEO),
)


def legacy_kind(prompt: str | None) -> JobKind:
    """The kind a legacy prompt's prefix names; generation when it names none."""
    text = (prompt or "").lstrip().upper()
    for prefix, kind in LEGACY_PREFIXES:
        if text.startswith(prefix):
            return kind
    return JobKind.GENERATION


@dataclass
class RecoveryItem:
    """One job the sweep found, and what it does (or, for a check, would do) about it."""

    job_id: str
    user_id: str
    kind: str
    provider: str
    provider_job_id: str | None
    status: str
    problem: str  # unfinished | stranded | store_failed | objects_missing
    action: str = "none"  # none | nudge | adopt | start | fail | restore | needs_regeneration
    detail: str = ""
    # after acting: started | already_running | done | job_failed | needs_regeneration |
    # failed (the action did not happen; the next sweep tries again) | taken (another sweep
    # claimed it)
    result: str | None = None


# RecoveryWorkflow's activity: (dry_run: bool) -> RecoveryReport. Workflows call it by name.
RECOVERY_SWEEP = "recovery.sweep"


@dataclass
class RecoveryReport:
    dry_run: bool
    checked: int = 0
    items: list[RecoveryItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for item in self.items:
            found[item.action] = found.get(item.action, 0) + 1
        return found
