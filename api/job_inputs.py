"""Checks of a job's input that depend on who asks, and the input as the provider gets it.

- A Replicate training pushes a model version into our account: only into models of
  REPLICATE_TRAINING_OWNER, and a user's own (`{user_id}-…`) unless an admin asks.
- An input URL naming one of our stored outputs (`{PUBLIC_BASE_URL}/v1/jobs/{id}/outputs/{n}`,
  what the dashboard sends to upscale or edit a result) opens only with the owner's key; the
  provider gets a short-lived signed link to that one file instead. An output the caller may
  not see is refused, whether or not it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Caller
from core.contracts import JobKind
from core.links import output_link, own_output
from core.models import Job
from core.settings import Settings
from providers.inputs import PROMPT_FIELDS
from providers.replicate import destination_error


def invalid(field: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 in the shape of the schema's own, for a problem found after parsing."""
    loc = ("body", *field.split(".")) if field else ("body",)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message,
                                    "input": value}])  # fmt: skip


def check_training(
    caller: Caller, settings: Settings, provider: str, kind: JobKind, payload: Mapping[str, Any]
) -> None:
    """422 unless a Replicate training's destination is one this caller may push into."""
    if provider != "replicate" or kind != JobKind.TRAINING:
        return
    destination = str(payload.get("destination", ""))
    problem = destination_error(
        destination,
        owner=settings.replicate_training_owner,
        user_id=caller.user_id,
        is_admin=caller.is_admin,
    )
    if problem is not None:
        raise invalid("input.destination", problem, destination)


async def provider_input(
    session: AsyncSession, caller: Caller, settings: Settings, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """`payload` with each link to our own outputs made a signed link the provider can open."""
    base = settings.public_base_url
    origin = _origin(base)
    cache: dict[str, Job | None] = {}

    async def visible(job_id: str) -> Job | None:
        if job_id not in cache:
            job = await session.get(Job, job_id)
            cache[job_id] = job if job is not None and caller.can_see(job.user_id) else None
        return cache[job_id]

    async def rewrite(field: str, value: Any) -> Any:
        if isinstance(value, list):
            return [await rewrite(field, item) for item in value]
        if isinstance(value, dict):
            return {k: await rewrite(field, v) for k, v in value.items()}
        if not isinstance(value, str) or _origin(value) != origin:
            return value
        named = own_output(value, base)
        if named is None:
            raise invalid(
                f"input.{field}",
                "a URL on this API must be an output of one of your jobs "
                f"({base.rstrip('/')}/v1/jobs/<job id>/outputs/<n>)",
                value,
            )
        job_id, index = named
        job = await visible(job_id)
        if job is None or not any(o.get("index") == index for o in job.outputs or []):
            raise invalid(
                f"input.{field}", f"job {job_id} has no output {index} you can use", value
            )
        return output_link(
            base, settings.signing_secret(), job_id, index, ttl_seconds=settings.link_ttl_seconds
        )

    return {
        name: value if name in PROMPT_FIELDS else await rewrite(name, value)
        for name, value in payload.items()
    }


def _origin(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()
