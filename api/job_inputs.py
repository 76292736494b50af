"""Checks of a job's input that depend on who asks, and the input as the provider gets it.

- A provider may check an input against who asks (its spec's `caller_error`): a Replicate
  training pushes a model version into our account, so only into models of
  REPLICATE_TRAINING_OWNER, and a user's own (`{user_id}-…`) unless an admin asks.
- An input URL naming one of our stored outputs (`{PUBLIC_BASE_URL}/v1/jobs/{id}/outputs/{n}`,
  what the dashboard sends to upscale or edit a result) opens only with the owner's key; the
  provider gets a short-lived signed link to that one file instead. An output the caller may
  not see is refused, whether or not it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Caller
from core.contracts import JobKind
from core.jobs.rerun import caller_problem
from core.jobs.start import InputRefused, signed_input
from core.settings import Settings


def invalid(field: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 in the shape of the schema's own, for a problem found after parsing."""
    loc = ("body", *field.split(".")) if field else ("body",)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message,
                                    "input": value}])  # fmt: skip


def check_for_caller(
    caller: Caller, settings: Settings, provider: str, kind: JobKind, payload: Mapping[str, Any]
) -> None:
    """422 when the provider refuses this input from this caller (a known provider)."""
    found = caller_problem(
        settings, provider, kind, payload, user_id=caller.user_id, is_admin=caller.is_admin
    )
    if found is not None:
        field, problem = found
        raise invalid(field, problem, payload.get(field.removeprefix("input.")))


async def provider_input(
    session: AsyncSession, caller: Caller, settings: Settings, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """`payload` with each link to our own outputs made a signed link the provider can open."""
    try:
        return await signed_input(session, settings, payload, caller.can_see)
    except InputRefused as exc:
        raise invalid(exc.field, exc.message, exc.value) from exc
