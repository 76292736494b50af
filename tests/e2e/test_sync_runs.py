"""Sync runs end to end: API → Temporal → worker → ERP emulator → database → API."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from core.db import sync_url
from devstack.stack import ERP_COMPANY_TOKENS
from sync_modules.registry import all_modules
from tests.e2e.conftest import E2E, wait_for_status
from tests.errors import error_of

pytestmark = pytest.mark.e2e

TERMINAL = {"DONE", "FAILED", "CANCELED", "SKIPPED"}
# A month no other test syncs (the API schema's example, which the fuzz suite sends, is
# 2024-12): "rows last written by this run" must not find them written by an earlier one.
MONTH = ("2024-09-01", "2024-09-30")


def erp(e2e: E2E) -> httpx.AsyncClient:
    assert e2e.stack.erp_url is not None
    return httpx.AsyncClient(base_url=e2e.stack.erp_url, timeout=30.0)


async def upstream_count(e2e: E2E, company: str, view: str, **filters: str) -> int:
    async with erp(e2e) as client:
        response = await client.get(
            f"/v1/companies/{company}/views/{view}/count",
            params=filters,
            headers={"Authorization": f"Bearer {ERP_COMPANY_TOKENS[company]}"},
        )
        assert response.status_code == 200, response.text
        return int(response.json()["count"])


def stored_rows(e2e: E2E, module: str, start: str, end: str) -> int:
    table = all_modules()[module].table
    engine = create_engine(sync_url(e2e.stack.database_url))
    try:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(
                        table.c.company_id == "acme",
                        table.c.business_date.between(
                            date.fromisoformat(start), date.fromisoformat(end)
                        ),
                    )
                )
                or 0
            )
    finally:
        engine.dispose()


def enriched_rows(e2e: E2E, run_id: str) -> int:
    """Rows last written by `run_id` that carry enrichment `details`."""
    engine = create_engine(sync_url(e2e.stack.database_url))
    try:
        with engine.connect() as connection:
            return sum(
                1
                for module in all_modules().values()
                for (data,) in connection.execute(
                    select(module.table.c.data).where(module.table.c.run_id == run_id)
                )
                if "details" in data
            )
    finally:
        engine.dispose()


async def set_faults(e2e: E2E, **faults: Any) -> None:
    async with erp(e2e) as client:
        if faults:
            assert (await client.put("/_emulator/faults", json=faults)).status_code == 200
        else:
            await client.delete("/_emulator/faults")


async def start_run(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("company_id", "acme")
    body.setdefault("mode", "period")
    response = await api.post("/v1/sync-runs", json=body)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] == "QUEUED"
    return run


async def wait_run(
    api: httpx.AsyncClient, run_id: str, statuses: set[str] = TERMINAL, within: float = 90
) -> dict[str, Any]:
    return await wait_for_status(api, f"/v1/sync-runs/{run_id}", statuses, within)


async def test_a_month_of_every_module_matches_the_upstream(e2e: E2E) -> None:
    async with e2e.api("admin") as api:
        run = await start_run(api, month=MONTH[0][:7])
        done = await wait_run(api, run["id"])
        assert done["status"] == "DONE", done
        for name, module in all_modules().items():
            expected = await upstream_count(
                e2e, "acme", module.view, start_date=MONTH[0], end_date=MONTH[1]
            )
            assert expected > 0
            progress = done["modules"][name]
            assert progress["status"] == "done"
            assert progress["processed"] + progress["skipped"] == expected, (name, progress)
        assert sum(m["enriched"] for m in done["modules"].values()) == 5  # MAX_ENRICH_PER_RUN
        assert enriched_rows(e2e, run["id"]) == 5
        logs = (await api.get(f"/v1/sync-runs/{run['id']}/logs")).json()["items"]
        assert any("module done" in log["message"] for log in logs)
        infos = (
            await api.get(f"/v1/sync-runs/{run['id']}/logs", params={"module": "estoque"})
        ).json()
        assert infos["items"] and all(log["module"] == "estoque" for log in infos["items"])
        listed = (
            await api.get("/v1/sync-runs", params={"company_id": "acme", "status": "DONE"})
        ).json()
        assert run["id"] in [r["id"] for r in listed["items"]]
    query = "AutosyncCompany = 'acme' AND AutosyncStatus = 'DONE'"
    ids: list[str] = []
    for _ in range(50):
        ids = [wf.id async for wf in e2e.temporal.list_workflows(query)]
        if f"sync-run-{run['id']}" in ids:
            break
        await asyncio.sleep(0.2)
    assert f"sync-run-{run['id']}" in ids


async def test_one_failing_module_fails_the_run_and_keeps_the_rest(e2e: E2E) -> None:
    await set_faults(e2e, failing_views=["vw_contas_pagar"])
    try:
        async with e2e.api("admin") as api:
            run = await start_run(api, month="2024-11")
            done = await wait_run(api, run["id"])
    finally:
        await set_faults(e2e)
    assert done["status"] == "FAILED"
    assert "contas_pagar" in done["error_message"]
    assert done["modules"]["contas_pagar"]["status"] == "failed"
    others = [m for n, m in done["modules"].items() if n != "contas_pagar"]
    # Each other module read its month (rows an earlier test stored come back as skipped).
    assert all(m["status"] == "done" and m["processed"] + m["skipped"] > 0 for m in others)


async def test_cancel_mid_module_keeps_stored_rows(e2e: E2E) -> None:
    await set_faults(e2e, slow_page_seconds=0.4)
    try:
        async with e2e.api("admin") as api:
            run = await start_run(api, start_date="2024-01-01", end_date="2024-12-31")
            await wait_run(api, run["id"], {"RUNNING"})
            for _ in range(100):
                state = (await api.get(f"/v1/sync-runs/{run['id']}")).json()
                if state["modules"]["vendas"]["pages"] >= 1:
                    break
                await asyncio.sleep(0.1)
            second = await api.post(
                "/v1/sync-runs", json={"company_id": "acme", "mode": "incremental"}
            )
            assert second.status_code == 409
            assert error_of(second)["details"]["running_run_id"] == run["id"]
            assert (await api.post(f"/v1/sync-runs/{run['id']}/cancel")).status_code == 202
            done = await wait_run(api, run["id"])
    finally:
        await set_faults(e2e)
    assert done["status"] == "CANCELED"
    vendas = done["modules"]["vendas"]
    # Rows it read are kept (rows an earlier test stored come back as skipped).
    assert vendas["status"] == "canceled" and vendas["processed"] + vendas["skipped"] > 0
    assert done["modules"]["estoque"]["status"] == "canceled"


async def test_bad_requests_say_what_to_fix(e2e: E2E) -> None:
    async with e2e.api("admin") as admin, e2e.api("alice") as alice:
        cases = [
            ({"company_id": "acme", "mode": "period", "month": "2024-13"}, "YYYY-MM"),
            ({"company_id": "acme", "mode": "period", "start_date": "2024-12-31",
              "end_date": "2024-12-01"}, "before start_date"),
            ({"company_id": "acme", "mode": "period", "month": "2024-12", "modules": ["compras"]},
             "compras"),
            ({"company_id": "acme", "mode": "period"}, "month"),
            ({"company_id": "nobody", "mode": "incremental"}, "ERP token"),
        ]  # fmt: skip
        for body, hint in cases:
            response = await admin.post("/v1/sync-runs", json=body)
            assert response.status_code == 422, body
            assert hint in response.text, (hint, response.text)
        assert (await alice.get("/v1/sync-runs")).status_code == 403
        assert (await admin.get("/v1/sync-runs/nope")).status_code == 404


async def test_schedule_create_pause_retime_trigger_delete(e2e: E2E) -> None:
    async with e2e.api("admin") as api:
        created = await api.post(
            "/v1/schedules", json={"company_id": "globex", "every_minutes": 60, "paused": True}
        )
        assert created.status_code == 201, created.text
        assert created.json()["paused"] is True
        again = await api.post("/v1/schedules", json={"company_id": "globex", "every_minutes": 5})
        assert again.status_code == 409
        resumed = (await api.post("/v1/schedules/globex/resume")).json()
        assert resumed["paused"] is False and resumed["next_runs"]
        paused = (await api.post("/v1/schedules/globex/pause")).json()
        # Not the times it would run at, were it running.
        assert paused["paused"] is True and paused["next_runs"] == []
        retimed = await api.patch("/v1/schedules/globex", json={"every_minutes": 15})
        assert retimed.json()["every_minutes"] == 15
        assert "globex" in [s["company_id"] for s in (await api.get("/v1/schedules")).json()]
        assert (await api.post("/v1/schedules/globex/trigger")).status_code == 202
        run = None
        for _ in range(300):
            runs = (await api.get("/v1/sync-runs", params={"company_id": "globex"})).json()
            scheduled = [r for r in runs["items"] if r["triggered_by"] == "schedule"]
            if scheduled and scheduled[0]["status"] in TERMINAL:
                run = scheduled[0]
                break
            await asyncio.sleep(0.1)
        assert run is not None and run["status"] == "DONE", run
        assert run["mode"] == "incremental"
        assert (await api.delete("/v1/schedules/globex")).status_code == 204
        assert (await api.get("/v1/schedules/globex")).status_code == 404
        bad = await api.post("/v1/schedules", json={"company_id": "globex", "every_minutes": 0})
        assert bad.status_code == 422


async def test_incremental_after_a_period_run_fetches_only_changed_rows(e2e: E2E) -> None:
    async with e2e.api("admin") as api:
        period = await start_run(api, month="2024-10")
        assert (await wait_run(api, period["id"]))["status"] == "DONE"
        async with erp(e2e) as client:
            touched = await client.post("/_emulator/rows/acme/vw_vendas/touch", json={"count": 5})
            assert touched.status_code == 200, touched.text
        incremental = await start_run(api, mode="incremental")
        done = await wait_run(api, incremental["id"])
    assert done["status"] == "DONE", done
    assert done["modules"]["vendas"]["processed"] == 5
    assert all(m["processed"] == 0 for n, m in done["modules"].items() if n != "vendas")


async def test_concurrent_runs_never_exceed_the_upstream_rate_limit(e2e: E2E) -> None:
    async with erp(e2e) as client:
        await client.post("/_emulator/reset")
    async with e2e.api("admin") as api:
        runs = [
            await start_run(api, company_id=company, start_date="2024-06-01", end_date="2024-09-30")
            for company in ("acme", "globex")
        ]
        done = [await wait_run(api, run["id"], within=120) for run in runs]
    assert [run["status"] for run in done] == ["DONE", "DONE"]
    async with erp(e2e) as client:
        stats = (await client.get("/_emulator/stats")).json()
    served = sum(entry["served"] for entry in stats["per_second"])
    assert served >= 2 * 6 * 5  # both companies, every module, several pages each
    # SYNC_MIN_INTERVAL_SECONDS=0.1 in tests/e2e/conftest.py: 10 requests/s at most
    assert stats["max_served_per_second"]["overall"] <= 10, stats["per_second"]


async def test_429_storm_slows_the_run_but_loses_nothing(e2e: E2E) -> None:
    await set_faults(e2e, rate_limit_per_second=3)
    try:
        async with e2e.api("admin") as api:
            run = await start_run(api, month="2024-08", modules=["vendas", "estoque"])
            done = await wait_run(api, run["id"], within=120)
        async with erp(e2e) as client:
            stats = (await client.get("/_emulator/stats")).json()
    finally:
        await set_faults(e2e)
    assert done["status"] == "DONE", done
    assert sum(entry["rejected"] for entry in stats["per_second"]) > 0
    for name in ("vendas", "estoque"):
        view = all_modules()[name].view
        expected = await upstream_count(
            e2e, "acme", view, start_date="2024-08-01", end_date="2024-08-31"
        )
        progress = done["modules"][name]
        assert progress["processed"] + progress["skipped"] == expected


async def test_worker_killed_mid_module_finishes_with_exact_counts(e2e: E2E) -> None:
    await set_faults(e2e, slow_page_seconds=0.3)
    try:
        async with e2e.api("admin") as api:
            run = await start_run(
                api,
                start_date="2024-01-01",
                end_date="2024-06-30",
                modules=["vendas", "contas_pagas"],
            )
            for _ in range(200):
                state = (await api.get(f"/v1/sync-runs/{run['id']}")).json()
                if state["modules"]["vendas"]["pages"] >= 2:
                    break
                await asyncio.sleep(0.1)
            e2e.stack.kill_worker()
            await asyncio.sleep(1.0)
            e2e.stack.start_worker()
            done = await wait_run(api, run["id"], within=150)
    finally:
        await set_faults(e2e)
    assert done["status"] == "DONE", done
    for name in ("vendas", "contas_pagas"):
        view = all_modules()[name].view
        expected = await upstream_count(
            e2e, "acme", view, start_date="2024-01-01", end_date="2024-06-30"
        )
        progress = done["modules"][name]
        assert progress["processed"] + progress["skipped"] == expected, (name, progress)
        assert stored_rows(e2e, name, "2024-01-01", "2024-06-30") == expected  # no duplicates
