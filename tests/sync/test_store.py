"""Sync modules' registry and upserts, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import SyncRun
from sync_modules.registry import all_modules, get_module
from sync_modules.store import Upserted, upsert_items

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def sessions(
    sessions_each_db: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    return sessions_each_db  # every test here runs on SQLite and on PostgreSQL


def item(i: int, updated: datetime, amount: str = "10.00") -> dict[str, Any]:
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
    page = [item(i, T0) for i in range(5)]

    async def upsert(company: str, items: list[dict[str, Any]], run: str) -> Upserted:
        return await upsert_items(session, vendas, company, items, run_id=run, now=T0)

    async with sessions() as session:
        assert await upsert("acme", page, "run-1") == Upserted(5, 0, 0)
        # the same page again (a retry after a crash): nothing changes
        assert await upsert("acme", page, "run-1") == Upserted(0, 5, 0)
        newer = item(0, T0 + timedelta(hours=1), "99.00")
        older = item(1, T0 - timedelta(hours=1), "1.00")
        assert await upsert("acme", [newer, older], "run-2") == Upserted(1, 1, 0)
        # another company's row with the same upstream id is its own row
        assert await upsert("globex", [item(0, T0)], "run-3") == Upserted(1, 0, 0)
        await session.commit()
        count = await session.scalar(select(func.count()).select_from(vendas.table))
        assert count == 6
        table = vendas.table
        stored = (
            await session.execute(
                select(table.c.data, table.c.business_date, table.c.upstream_updated_at).where(
                    table.c.company_id == "acme", table.c.external_id == "V000000000"
                )
            )
        ).one()
        assert stored.data["total"] == "99.00"
        assert stored.business_date.isoformat() == "2024-12-05"
        assert stored.upstream_updated_at == T0 + timedelta(hours=1)


async def test_unusable_rows_are_counted_as_errors_and_left_out(sessions) -> None:
    vendas = get_module("vendas")
    naive = item(3, T0) | {"updated_at": "2025-01-01T00:00:00"}
    bad: list[dict[str, Any]] = [
        {"updated_at": T0.isoformat()},  # no id
        item(1, T0) | {"updated_at": "yesterday"},
        item(2, T0) | {"data_venda": "2024-13-40"},
        naive,
    ]
    async with sessions() as session:
        page = [item(0, T0), *bad]
        result = await upsert_items(session, vendas, "acme", page, run_id="r", now=T0)
        assert result == Upserted(1, 0, 4)
        assert await session.scalar(select(func.count()).select_from(vendas.table)) == 1


async def test_a_page_naming_a_row_twice_keeps_its_newest_copy(sessions) -> None:
    vendas = get_module("vendas")
    page = [item(0, T0 + timedelta(hours=2), "2.00"), item(0, T0, "1.00")]
    async with sessions() as session:
        result = await upsert_items(session, vendas, "acme", page, run_id="r", now=T0)
        assert result == Upserted(1, 0, 0)
        data = await session.scalar(select(vendas.table.c.data))
        assert data["total"] == "2.00"


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
