"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright).

One user session, start to finish, without reloading the page: a wrong key, then the admin
key; a generation and an upscale of its output finishing on screen, with the before/after
slider; a sync run whose modules turn done; a second run cancelled with its button; the live
stream cut (the indicator falls back to polling and a job still finishes), then restored;
another user's key; and no URL the page asks for ever holds an API key. Screenshots of every
step go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page, Request, async_playwright, expect

from sync_modules.registry import all_modules
from tests.e2e.conftest import ARTIFACTS, E2E, KEYS, LOCAL_ONLY

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ARTIFACTS / "dashboard"
X = "\N{MULTIPLICATION SIGN}"
ROOT = ARTIFACTS.parent

# Generous bounds for things that take a second or two: a slow machine must not fail them.
JOB_WAIT_MS = 45_000
RUN_WAIT_MS = 90_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium (skipped without it on a dev machine; CI must have it)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (.ci/run installs Debian's chromium)"
        if os.environ.get("CI") or os.environ.get("AUTOSYNC_CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return CHROMIUM


@pytest.fixture
async def page(chromium: Path) -> AsyncIterator[Page]:
    console: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 1100})
            page = await context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            yield page
        finally:
            await browser.close()
            await asyncio.to_thread((SHOTS / "console.log").write_text, "\n".join(console) + "\n")


class Shots:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0

    async def take(self, name: str) -> None:
        self.count += 1
        path = SHOTS / f"{self.count:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path.relative_to(ROOT)}")


async def started(form: Locator, attribute: str, previous: str | None = None) -> str:
    """The id the form reports after a successful submit (different from `previous`)."""
    result = form.locator(f".form-result[{attribute}]")
    await expect(result).to_contain_text("Started", timeout=15_000)
    value = await result.get_attribute(attribute)
    assert value and value != previous, await result.text_content()
    return value


async def generate(page: Page, prompt: str, previous: str | None = None) -> str:
    form = page.locator("#gen-form")
    await form.get_by_label("Prompt").fill(prompt)
    await form.get_by_label("Width").fill("64")
    await form.get_by_label("Height").fill("64")
    await form.get_by_role("button", name="Generate").click()
    job_id = await started(form, "data-job-id", previous)
    # On screen from the POST's answer, before any event or poll.
    await expect(page.locator(f'.job[data-job-id="{job_id}"]')).to_be_visible()
    return job_id


async def finished_image(page: Page, job_id: str, size: str) -> None:
    card = page.locator(f'#gallery .job[data-job-id="{job_id}"]')
    await expect(card.locator(".status")).to_have_text("succeeded", timeout=JOB_WAIT_MS)
    await expect(card.locator("figure .dims")).to_have_text(size, timeout=15_000)


async def start_sync(page: Page, company: str, month: str, previous: str | None = None) -> str:
    form = page.locator("#sync-form")
    await form.get_by_label("Company").select_option(company)
    await form.get_by_label("Month").fill(month)
    await form.get_by_role("button", name="Start period sync").click()
    return await started(form, "data-run-id", previous)


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
    shots = Shots(page)
    try:
        await walk_through(e2e, page, shots)
    except BaseException:
        await shots.take("failure")  # the page as it stood when a step gave up
        raise


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

    upscale = page.locator("#upscale-form")
    await upscale.get_by_label("Output", exact=True).select_option(f"{gen_id}:0")
    await upscale.get_by_label("Scale").select_option("2")
    await upscale.get_by_role("button", name="Upscale").click()
    up_id = await started(upscale, "data-job-id")
    await finished_image(page, up_id, f"128 {X} 128")
    compare = page.locator("#compare")
    await expect(compare).to_have_attribute("data-job-id", up_id)
    await expect(compare).to_have_attribute("data-ready", "true", timeout=15_000)
    await expect(compare.locator(".stat-before")).to_have_text(f"64 {X} 64 px · 0.004 MP")
    await expect(compare.locator(".stat-after")).to_have_text(f"128 {X} 128 px · 0.016 MP")
    await expect(compare.locator(".stat-factor")).to_have_text(
        f"4.0{X} the pixels (2.0{X} per side)"
    )
    await compare.get_by_label("Comparison position").fill("30")
    await expect(compare.locator(".compare-view")).to_have_attribute(
        "style", re.compile(r"--pos:\s*30%")
    )
    await shots.take("upscale-compare")

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
    await erp_faults(e2e, slow_page_seconds=1.0)
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
    live_id = await generate(page, "after recovery", previous=polled_id)
    await finished_image(page, live_id, f"64 {X} 64")
    await shots.take("recovered-live")

    # Another key: the page starts over as that user, without the admins' sync panel.
    await page.get_by_label("API key").fill(KEYS["alice"])
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("#whoami")).to_have_text("alice")
    await expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
    await expect(page.locator("#sync-panel")).to_be_hidden()
    await expect(page.locator(f'.job[data-job-id="{gen_id}"]')).to_have_count(0)
    await shots.take("other-user")

    assert await page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert errors == [], errors
    # No API key ever sat in a URL: files load by their signed links, streams by stream tokens.
    leaked = [url for url in urls for key in ("not-a-key", *KEYS.values()) if key in url]
    assert leaked == [], leaked
    assert streams and all("token=" in url for url in streams), streams
    assert outputs and all("token=" in url for url in outputs), outputs
