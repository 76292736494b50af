"""Health of the API's dependencies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import SessionDep, TemporalDep

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
async def health(session: SessionDep, temporal: TemporalDep) -> dict[str, Any]:
    """`healthy` when the database and Temporal answer, else `degraded` with the reasons."""
    checks: dict[str, str] = {}
    try:
        await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    try:
        await temporal.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"unreachable: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return {"status": "healthy" if healthy else "degraded", "checks": checks}
