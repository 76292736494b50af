"""Sync modules' registry and upserts, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import SyncRun
from devstack.postgres import PostgresServer
from sync_modules.registry import all_modules, get_module
from sync_modules.store import upsert_rows

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        url = postgres.create_database()
    upgrade(url)
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def item(i: int, updated: datetime, amount: str = "10.00") -> dict[str, object]:
    return {
        "id": f"V{i:09d}",
        "updated_at": updated.isoformat(),
        "data_venda": "2024-12-05",
        "total": amount,
    }


def test_the_six_views_are_registered_in_the_seeds_order() -> None:
    assert list(all_modules()) == [
        "vendas", "contas_receber_posicao", "contas_pagar", "contas_pagas",
        "contas_recebidas", "estoque",
    ]  # fmt: skip
    assert get_module("estoque").view == "vw_estoque"
    with pytest.raises(KeyError, match="known: vendas"):
        get_module("compras")


async def test_upsert_never_duplicates_and_newer_rows_win(sessions) -> None:
    vendas = get_module("vendas")
    rows = [vendas.to_row("acme", item(i, T0), "run-1", T0) for i in range(5)]
    async with sessions() as session:
        assert await upsert_rows(session, vendas, rows) == (5, 0)
        # the same page again (a retry after a crash): nothing changes
        assert await upsert_rows(session, vendas, rows) == (0, 5)
        newer = vendas.to_row("acme", item(0, T0 + timedelta(hours=1), "99.00"), "run-2", T0)
        older = vendas.to_row("acme", item(1, T0 - timedelta(hours=1), "1.00"), "run-2", T0)
        assert await upsert_rows(session, vendas, [newer, older]) == (1, 1)
        # another company's row with the same upstream id is its own row
        other = vendas.to_row("globex", item(0, T0), "run-3", T0)
        assert await upsert_rows(session, vendas, [other]) == (1, 0)
        await session.commit()
        count = await session.scalar(select(func.count()).select_from(vendas.table))
        assert count == 6
        stored = (
            await session.execute(
                select(vendas.table.c.data, vendas.table.c.business_date).where(
                    vendas.table.c.company_id == "acme", vendas.table.c.external_id == "V000000000"
                )
            )
        ).one()
        assert stored.data["total"] == "99.00"
        assert stored.business_date.isoformat() == "2024-12-05"


async def test_one_active_run_per_company(sessions) -> None:
    async with sessions() as session:
        session.add(SyncRun(id="r1", company_id="acme", mode="period", status="RUNNING"))
        session.add(SyncRun(id="r2", company_id="globex", mode="period", status="QUEUED"))
        session.add(SyncRun(id="r0", company_id="acme", mode="period", status="DONE"))
        await session.commit()
    async with sessions() as session:
        session.add(SyncRun(id="r3", company_id="acme", mode="incremental", status="QUEUED"))
        with pytest.raises(IntegrityError):
            await session.commit()
