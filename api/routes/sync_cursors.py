"""Sync module control (admin only): each module's cursor, and resetting one of them.

A module is re-synced for a period with an ordinary run (`POST /v1/sync-runs`, mode `period`,
`modules: [name]`), which touches no other module's cursor or rows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.companies import known_company
from api.deps import AdminCaller, SessionDep, SettingsDep
from api.schemas.sync_cursors import CursorPublic, CursorReset, CursorsPublic, cursor_public
from core.ids import NAME_ID_PATTERN
from core.sync_runs import cursors
from sync_modules.registry import all_modules

router = APIRouter(prefix="/v1/sync", tags=["sync runs"])


def known_module(module: str) -> str:
    known = list(all_modules())
    if module not in known:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown module {module!r}; known: {', '.join(known)}",
        )
    return module


@router.get("/cursors", response_model=CursorsPublic)
async def list_sync_cursors(
    caller: AdminCaller,
    session: SessionDep,
    settings: SettingsDep,
    company_id: Annotated[str, Query(pattern=NAME_ID_PATTERN)],
) -> CursorsPublic:
    """Each module's cursor for a company: its watermark, the run that moved it, its rows."""
    known_company(settings, company_id)
    found = await cursors.list_cursors(session, company_id)
    return CursorsPublic(company_id=company_id, items=[cursor_public(c) for c in found])


@router.post("/modules/{module}/reset", response_model=CursorPublic)
async def reset_sync_cursor(
    module: str, body: CursorReset, caller: AdminCaller, session: SessionDep, settings: SettingsDep
) -> CursorPublic:
    """Reset one module's cursor: its next incremental run reads its whole history.

    The other modules' cursors are untouched; 409 while the company has a run in progress.
    """
    known_module(module)
    known_company(settings, body.company_id)
    try:
        reset = await cursors.reset_cursor(session, body.company_id, module, caller.user_id)
    except cursors.RunInProgress as exc:
        await session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"message": f"company {body.company_id} has a run in progress: reset the cursor "
             "once it ends (or cancel it)", "running_run_id": exc.run_id},
        ) from None  # fmt: skip
    return cursor_public(reset)
