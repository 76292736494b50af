"""`GET /_emulator/jobs`: the provider jobs an emulator created, per app job id.

The app puts its own job id in every webhook URL it hands a provider (`?job_id=…`), so the
provider jobs made for one app job can be counted exactly: a ledger checks each app job has
exactly one (and counts cancelled extras apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class ProviderJob:
    """One provider job as the listing shows it."""

    id: str
    callback_url: str | None  # the webhook / callback URL it was created with
    status: str  # in the provider's own words
    canceled: bool  # ended by a cancel (the provider's status may not say so, as at fal)


def our_job_id(callback_url: str | None) -> str | None:
    """The `job_id=` query parameter of a webhook URL: the app's job the provider job is for."""
    if not callback_url:
        return None
    values = parse_qs(urlsplit(callback_url).query).get("job_id")
    return values[0] if values else None


def provider_jobs(jobs: Iterable[ProviderJob], job_id: str | None) -> dict[str, Any]:
    """The body of `GET /_emulator/jobs[?job_id=…]`: provider jobs per app job id, oldest first.

    Only jobs whose callback URL carries a `job_id=`. With `job_id`, that job's list and its
    `count`; without, every app job's list and `counts` (provider jobs per app job).
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        ours = our_job_id(job.callback_url)
        if ours is not None:
            item = {"id": job.id, "status": job.status, "canceled": job.canceled}
            by_job.setdefault(ours, []).append(item)
    if job_id is not None:
        found = by_job.get(job_id, [])
        return {"job_id": job_id, "count": len(found), "provider_jobs": found}
    return {"jobs": by_job, "counts": {ours: len(found) for ours, found in by_job.items()}}
