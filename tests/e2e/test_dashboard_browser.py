"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright).

One user session, start to finish, without reloading the page: a wrong key, then the admin
key; a generation and an upscale of its output finishing in the gallery (the comparison has
its own test in test_dashboard_panels.py); a sync run whose modules turn done; a second run
cancelled with its button; the live stream cut (the indicator falls back to polling and a job
still finishes), then restored; another user's key; and no URL the page asks for ever holds an
API key. Screenshots of every step go to test-artifacts/dashboard/ (the fixtures and helpers:
tests/e2e/dashboard_support.py).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, Request, expect

from sync_modules.registry import all_modules
from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY
from tests.e2e.dashboard_support import (
    RUN_WAIT_MS,
    Shots,
    X,
    image_loaded,
    start_job,
    started,
    tile_succeeded,
)

pytestmark = pytest.mark.e2e


async def generate(page: Page, prompt: str, previous: str | None = None) -> str:
    return await start_job(page, "generation", previous, Prompt=prompt, Width="64", Height="64")


async def finished_image(page: Page, job_id: str, size: str) -> None:
    tile = await tile_succeeded(page, job_id)
    await expect(tile.locator("figure .dims")).to_have_text(size)
    image = tile.locator("figure img")
    await image_loaded(image)


async def start_sync(page: Page, company: str, month: str, previous: str | None = None) -> str:
    form = page.locator("#sync-form")
    await form.get_by_label("Company").select_option(company)
    await form.get_by_label("Month").fill(month)
    await form.get_by_role("button", name="Start period sync").click()
    return await started(form.locator(".form-result"), "data-run-id", previous)


async def erp_faults(e2e: E2E, **faults: object) -> None:
    assert e2e.stack.erp_url is not None
    async with httpx.AsyncClient(base_url=e2e.stack.erp_url, timeout=30.0) as client:
        if faults:
            response = await client.put("/_emulator/faults", json=faults)
        else:
            response = await client.delete("/_emulator/faults")
        assert response.status_code == 200, response.text


@LOCAL_ONLY  # the page is the subject here; the API's variants have their own tests
async def test_dashboard_live_updates_fallback_and_recovery(
    chromium: Path, e2e: E2E, page: Page
) -> None:  # chromium first: without it, skip before a stack starts
    await walk_through(e2e, page, Shots(page, "walk"))


async def walk_through(e2e: E2E, page: Page, shots: Shots) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    streams: list[str] = []
    outputs: list[str] = []
    urls: list[str] = []

    def on_request(request: Request) -> None:
        urls.append(request.url)
        if "/v1/events" in request.url:
            streams.append(request.url)
        if "/outputs/" in request.url:
            outputs.append(request.url)

    page.on("request", on_request)

    await page.goto(f"{e2e.stack.api_url}/")
    await page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    conn = page.locator("#conn")
    notice = page.locator("#key-help")

    # No key yet, then a wrong one: both say what to do.
    await expect(notice).to_contain_text("Enter an API key")
    await expect(conn).to_have_attribute("data-state", "idle")
    await shots.take("no-key")
    await page.get_by_label("API key").fill("not-a-key")
    await page.get_by_role("button", name="Connect").click()
    await expect(notice).to_contain_text("not accepted")
    await shots.take("wrong-key")

    await page.get_by_label("API key").fill(KEYS["admin"])
    await page.get_by_role("button", name="Connect").click()
    await expect(notice).to_be_hidden()
    await expect(page.locator("#whoami")).to_contain_text("root")
    await expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
    await expect(conn).to_have_text("live")
    await shots.take("connected-live")

    # A generation, then an upscale of its output: both finish on screen.
    gen_id = await generate(page, "a red fox in the snow")
    await finished_image(page, gen_id, f"64 {X} 64")
    await shots.take("generation-succeeded")

    up_id = await start_job(page, "upscale", gen_id, Output=f"{gen_id}:0", Scale="2")
    await finished_image(page, up_id, f"128 {X} 128")
    await shots.take("upscale-succeeded")

    # A period sync: every module turns done, with counts and log lines.
    run_id = await start_sync(page, "acme", "2025-03")
    run = page.locator(f'.run[data-run-id="{run_id}"]')
    await expect(run).to_be_visible()
    await expect(run.locator(".run-head .status")).to_have_text("DONE", timeout=RUN_WAIT_MS)
    await expect(run.locator('.module[data-status="done"]')).to_have_count(len(all_modules()))
    await expect(run.locator(".module-counts").first).to_contain_text("processed")
    await expect(run.locator(".run-logs li").first).to_be_visible()
    await expect(run.locator(".run-cancel")).to_be_hidden()
    await shots.take("sync-done")

    # A second run, slowed down at the ERP so it is still running when Cancel is pressed.
    await erp_faults(e2e, slow_page_seconds=3.0)
    try:
        second_id = await start_sync(page, "acme", "2025-04", previous=run_id)
        second = page.locator(f'.run[data-run-id="{second_id}"]')
        await expect(second.locator(".run-head .status")).to_have_text(
            "RUNNING", timeout=RUN_WAIT_MS
        )
        await expect(
            second.locator('.module[data-status="running"] .module-icon.spinner').first
        ).to_be_visible(timeout=RUN_WAIT_MS)
        await shots.take("sync-running")
        await second.get_by_role("button", name="Cancel").click()
        await expect(second.locator(".run-head .status")).to_have_text(
            "CANCELED", timeout=RUN_WAIT_MS
        )
        await expect(second.locator('.module[data-status="canceled"]').first).to_be_visible()
        await expect(second.locator(".run-cancel")).to_be_hidden()
        await shots.take("sync-canceled")
    finally:
        await erp_faults(e2e)

    # Cut the live stream: the indicator says polling, and a job still finishes on screen.
    assert await page.evaluate("window.autosync.lastEventId") > 0
    await page.route("**/v1/events**", lambda route: route.abort())
    await page.evaluate("window.autosync.dropStream()")
    await expect(conn).to_have_attribute("data-state", "polling")
    await expect(conn).to_contain_text("polling every")
    await shots.take("stream-cut-polling")
    polled_id = await generate(page, "made while polling", previous=up_id)
    await finished_image(page, polled_id, f"64 {X} 64")
    await expect(conn).to_have_attribute("data-state", "polling")
    await shots.take("polling-job-succeeded")

    # Let it through again: back to live by itself, resuming after the last event seen.
    await page.unroute("**/v1/events**")
    await expect(conn).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(conn).to_have_text("live")
    assert "after=" in streams[-1], streams[-1]
    await expect(page.locator("#reconnects")).to_have_text("1 reconnect")
    live_id = await generate(page, "after recovery", previous=polled_id)
    await finished_image(page, live_id, f"64 {X} 64")
    await shots.take("recovered-live")

    # Another key: the page starts over as that user, without the admins' sync panel.
    await page.get_by_label("API key").fill(KEYS["alice"])
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("#whoami")).to_have_text("alice")
    await expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
    await expect(page.locator("#sync-panel")).to_be_hidden()
    await expect(page.locator(f'[data-job-id="{gen_id}"]')).to_have_count(0)
    await shots.take("other-user")

    assert await page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert errors == [], errors
    # No API key ever sat in a URL: files load by their signed links, streams by stream tokens.
    leaked = [url for url in urls for key in ("not-a-key", *KEYS.values()) if key in url]
    assert leaked == [], leaked
    assert streams and all("token=" in url for url in streams), streams
    assert outputs and all("token=" in url for url in outputs), outputs
