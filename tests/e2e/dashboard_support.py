"""What the dashboard's browser tests share: Debian's Chromium driven by Playwright (one browser
per test module, a fresh context per test), screenshots under test-artifacts/dashboard/, and
the steps every panel needs (connect, start a job from the form, wait for a card)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, async_playwright, expect

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SHOTS = ARTIFACTS / "dashboard"
ROOT = ARTIFACTS.parent
X = "\N{MULTIPLICATION SIGN}"

# Generous bounds for things that take a second or two: a slow machine must not fail them.
JOB_WAIT_MS = 45_000
RUN_WAIT_MS = 90_000
WIDE: ViewportSize = {"width": 1400, "height": 1000}
# Seven sessions may share two cores: what takes a second alone can take several.
expect.set_options(timeout=15_000)


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


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's own outcome where the `page` fixture's teardown can read it (a failed
    test leaves a screenshot of the page as it stood)."""
    report = yield
    if report.when == "call":
        item.dashboard_call_report = report  # type: ignore[attr-defined]
    return report


class Shots:
    """Full-page screenshots named `{prefix}-{nn}-{name}.png`."""

    def __init__(self, page: Page, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        self.count = 0

    async def take(self, name: str) -> None:
        self.count += 1
        path = SHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path.relative_to(ROOT)}")


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh page (its own storage); the console goes to `{test}.console.log`, and a test
    that fails leaves a screenshot of the page as it stood."""
    console: list[str] = []
    errors: list[str] = []
    context = await browser.new_context(viewport=WIDE)
    page = await context.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    name = re.sub(r"[^\w-]+", "-", request.node.name.removeprefix("test_")).strip("-")
    try:
        yield page
        report = getattr(request.node, "dashboard_call_report", None)
        if report is not None and report.failed:
            await page.screenshot(path=str(SHOTS / f"{name}-failure.png"), full_page=True)
        assert errors == [], errors
    finally:
        await context.close()
        text = "\n".join(console + [f"pageerror: {e}" for e in errors]) + "\n"
        await asyncio.to_thread((SHOTS / f"{name}.console.log").write_text, text)


async def connect(page: Page, api_url: str, key: str, history_page: int | None = None) -> None:
    await page.goto(f"{api_url}/")
    if history_page is not None:  # fewer jobs make a second page
        await page.locator("#history").evaluate(
            "(e, n) => { e.dataset.pageSize = n; }", history_page
        )
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)


async def started(result: Locator, attribute: str, previous: str | None = None) -> str:
    """The id a form reports after a successful submit (different from `previous`)."""
    await expect(result).to_contain_text("Started", timeout=15_000)
    value = await result.get_attribute(attribute)
    assert value and value != previous, await result.text_content()
    return value


async def start_job(page: Page, kind: str, previous: str | None = None, **fields: str) -> str:
    """Fill the new-job form for `kind` (`fields` by label) and start it; the job's id."""
    form = page.locator("#job-form")
    await form.get_by_label("Kind").select_option(kind)
    for label, value in fields.items():
        # The exact label, else the one it begins ("Width" of "Width (px, optional)").
        target = form.get_by_label(label, exact=True)
        if not await target.count():
            target = form.get_by_label(label)
        if await target.evaluate("e => e.tagName") == "SELECT":
            await target.select_option(value)
        else:
            await target.fill(value)
    await form.locator("#job-submit").click()
    job_id = await started(form.locator(".form-result"), "data-job-id", previous)
    return job_id


async def tile_succeeded(page: Page, job_id: str) -> Locator:
    tile = page.locator(f'#gallery .tile[data-job-id="{job_id}"]')
    await expect(tile).to_have_attribute("data-status", "succeeded", timeout=JOB_WAIT_MS)
    return tile


async def no_horizontal_overflow(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = await page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"


async def image_loaded(image: Locator) -> None:
    """Scroll the <img> into view (thumbnails load lazily) and wait until its file has loaded
    (a broken one never does)."""
    await image.scroll_into_view_if_needed()
    handle = await image.element_handle()
    await image.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=handle, timeout=15_000
    )
