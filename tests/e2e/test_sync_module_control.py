"""Sync module control end to end (Airbyte's per-stream refresh): view the cursors, reset one
module's, re-sync one module for a period, and reconcile what each module received against the
total the ERP reports."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from core.db import sync_url
from sync_modules.registry import all_modules
from tests.e2e.conftest import E2E
from tests.e2e.test_sync_runs import set_faults, start_run, upstream_count, wait_run
from tests.errors import error_of

pytestmark = pytest.mark.e2e


async def cursors(api: httpx.AsyncClient, company: str = "acme") -> dict[str, dict[str, Any]]:
    response = await api.get("/v1/sync/cursors", params={"company_id": company})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["company_id"] == company
    return {cursor["module"]: cursor for cursor in body["items"]}


def rows_written_by(e2e: E2E, run_id: str) -> dict[str, int]:
    """Per module: the stored rows that `run_id` wrote last."""
    engine = create_engine(sync_url(e2e.stack.database_url))
    try:
        with engine.connect() as connection:
            return {
                name: int(
                    connection.scalar(
                        select(func.count())
                        .select_from(module.table)
                        .where(module.table.c.run_id == run_id)
                    )
                    or 0
                )
                for name, module in all_modules().items()
            }
    finally:
        engine.dispose()


def without(found: dict[str, dict[str, Any]], module: str) -> dict[str, dict[str, Any]]:
    return {name: cursor for name, cursor in found.items() if name != module}


async def test_a_reset_module_resyncs_its_whole_history_and_the_others_do_not(e2e: E2E) -> None:
    async with e2e.api("admin") as api:
        first = await start_run(api, mode="incremental")
        assert (await wait_run(api, first["id"]))["status"] == "DONE"
        before = await cursors(api)
        assert list(before) == list(all_modules())
        assert all(c["state"] == "synced" and c["updated_since"] for c in before.values()), before
        assert before["estoque"]["last_run"]["id"] == first["id"]

        reset = await api.post("/v1/sync/modules/estoque/reset", json={"company_id": "acme"})
        assert reset.status_code == 200, reset.text
        assert reset.json()["state"] == "reset"
        assert reset.json()["updated_since"] is None
        assert reset.json()["reset_by"] == "root"
        after_reset = await cursors(api)
        assert after_reset["estoque"]["state"] == "reset"
        assert without(after_reset, "estoque") == without(before, "estoque")

        run = await start_run(api, mode="incremental")
        done = await wait_run(api, run["id"], within=150)
        after = await cursors(api)
    assert done["status"] == "DONE", done
    whole = await upstream_count(e2e, "acme", "vw_estoque")  # every row, no filter
    estoque = done["modules"]["estoque"]
    assert estoque["received"] == whole == estoque["processed"] + estoque["skipped"]
    assert done["reconciliation"]["estoque"] == {
        "upstream": whole,
        "received": whole,
        "matched": True,
    }
    # The others read only what changed since their cursors: none of their rows was rewritten.
    written = rows_written_by(e2e, run["id"])
    for name, progress in done["modules"].items():
        if name != "estoque":
            assert progress["processed"] == 0, (name, progress)
            assert progress["received"] < whole, (name, progress)
            assert written[name] == 0, (name, written)
    assert after["estoque"]["state"] == "synced"
    assert after["estoque"]["last_run"]["id"] == run["id"]
    assert after["estoque"]["rows"] >= whole


async def test_a_period_resync_of_one_module_leaves_the_others_alone(e2e: E2E) -> None:
    async with e2e.api("admin") as api:
        before = await cursors(api)
        run = await start_run(api, month="2024-05", modules=["contas_pagas"])
        done = await wait_run(api, run["id"])
        after = await cursors(api)
    assert done["status"] == "DONE", done
    assert list(done["modules"]) == ["contas_pagas"]
    expected = await upstream_count(
        e2e, "acme", "vw_contas_pagas", start_date="2024-05-01", end_date="2024-05-31"
    )
    assert expected > 0
    assert done["reconciliation"] == {
        "contas_pagas": {"upstream": expected, "received": expected, "matched": True}
    }
    progress = done["modules"]["contas_pagas"]
    assert progress["processed"] + progress["skipped"] == expected
    written = rows_written_by(e2e, run["id"])
    assert written["contas_pagas"] == progress["processed"]
    assert all(count == 0 for name, count in written.items() if name != "contas_pagas")
    # Other modules' cursors, last runs and stored rows are exactly as they were.
    assert without(after, "contas_pagas") == without(before, "contas_pagas")


async def test_rows_lost_upstream_are_flagged_by_reconciliation(e2e: E2E) -> None:
    await set_faults(e2e, drop_rows_per_page=1)
    try:
        async with e2e.api("admin") as api:
            run = await start_run(api, month="2024-04", modules=["vendas"])
            done = await wait_run(api, run["id"])
            logs = await api.get(
                f"/v1/sync-runs/{run['id']}/logs", params={"level": "warn", "module": "vendas"}
            )
    finally:
        await set_faults(e2e)
    assert done["status"] == "DONE", done  # flagged, not failed: the rows received are stored
    expected = await upstream_count(
        e2e, "acme", "vw_vendas", start_date="2024-04-01", end_date="2024-04-30"
    )
    pages = done["modules"]["vendas"]["pages"]
    assert pages > 1
    flagged = {"upstream": expected, "received": expected - pages, "matched": False}
    assert done["reconciliation"] == {"vendas": flagged}
    assert done["modules"]["vendas"]["received"] == expected - pages
    assert logs.status_code == 200, logs.text
    mismatches = [line for line in logs.json()["items"] if "reconciliation" in line["message"]]
    assert len(mismatches) == 1, logs.json()
    assert mismatches[0]["metadata"] == {"reconciliation": flagged}


async def test_a_reset_is_refused_while_the_company_has_a_run_going(e2e: E2E) -> None:
    await set_faults(e2e, slow_page_seconds=0.4)
    try:
        async with e2e.api("admin") as api:
            before = await cursors(api)
            run = await start_run(
                api, start_date="2024-01-01", end_date="2024-12-31", modules=["vendas"]
            )
            await wait_run(api, run["id"], {"RUNNING"})
            refused = await api.post(
                "/v1/sync/modules/contas_pagar/reset", json={"company_id": "acme"}
            )
            assert refused.status_code == 409, refused.text
            assert error_of(refused)["details"]["running_run_id"] == run["id"]
            assert (await api.post(f"/v1/sync-runs/{run['id']}/cancel")).status_code == 202
            done = await wait_run(api, run["id"])
            after = await cursors(api)
    finally:
        await set_faults(e2e)
    assert done["status"] == "CANCELED"
    assert after["contas_pagar"] == before["contas_pagar"]


async def test_bad_module_control_requests_say_what_to_fix(e2e: E2E) -> None:
    async with e2e.api("admin") as admin, e2e.api("alice") as alice:
        unknown = await admin.post("/v1/sync/modules/compras/reset", json={"company_id": "acme"})
        assert unknown.status_code == 422
        assert "compras" in unknown.text and "vendas" in unknown.text
        resync = await admin.post(
            "/v1/sync-runs",
            json={"company_id": "acme", "mode": "period", "month": "2024-05",
                  "modules": ["compras"]},
        )  # fmt: skip
        assert resync.status_code == 422 and "compras" in resync.text
        nobody = await admin.post("/v1/sync/modules/vendas/reset", json={"company_id": "nobody"})
        assert nobody.status_code == 422 and "ERP token" in nobody.text
        assert (await admin.get("/v1/sync/cursors")).status_code == 422
        listed = await admin.get("/v1/sync/cursors", params={"company_id": "nobody"})
        assert listed.status_code == 422
        assert (await alice.get("/v1/sync/cursors", params={"company_id": "acme"})).status_code == (
            403
        )
        forbidden = await alice.post("/v1/sync/modules/vendas/reset", json={"company_id": "acme"})
        assert forbidden.status_code == 403
        # None of it reset the cursor.
        assert (await cursors(admin))["vendas"]["state"] != "reset"
