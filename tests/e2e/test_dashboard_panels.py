"""Each panel of the dashboard in headless Chromium, against one shared stack: the health
badge, every kind of job from the form, the gallery's thumbnails, trainings and videos, the
before/after comparison, the history's filters and pages, retry, quick sync runs with their
summary, schedules, pull-sync clients, recovery, and the layout at 360 and 1400 px.
Screenshots of each state go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from devstack.processes import free_port
from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY
from tests.e2e.dashboard_support import (
    JOB_WAIT_MS,
    RUN_WAIT_MS,
    Shots,
    X,
    connect,
    image_loaded,
    no_horizontal_overflow,
    start_job,
    started,
    tile_succeeded,
)
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = [pytest.mark.e2e, LOCAL_ONLY]  # the page is the subject: one stack is enough


async def test_health_badge_shows_what_the_api_reports(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "health")
    report: dict[str, Any] = {
        "status": "degraded",
        "reasons": ["4 errors in the last hour (4 failed jobs, 0 failed sync runs)"],
        "checks": {
            "recent_errors": {"status": "degraded", "count": 4},
            "temporal": {"status": "ok"},
        },
    }
    answers = [(200, report)]

    async def health(route: Route) -> None:
        code, body = answers[-1]
        await route.fulfill(status=code, content_type="application/json", body=json.dumps(body))

    await page.route("**/v1/health", health)
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    badge = page.locator("#health")
    await expect(badge).to_have_attribute("data-status", "degraded")
    await expect(badge).to_contain_text("degraded (1 reason)")
    # The live stream's side: last event time and reconnects, beside the badge.
    await expect(page.locator("#reconnects")).to_have_text("0 reconnects")
    await badge.click()
    dialog = page.locator("#health-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".health-reasons li")).to_have_text([report["reasons"][0]])
    await shots.take("degraded-reasons")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()

    # Critical comes as a 503 with the same body: the badge says so at the next check.
    answers.append(
        (503, {**report, "status": "critical", "reasons": ["the database is unreachable (x)"]})
    )
    await badge.click()  # a click checks again
    await expect(badge).to_have_attribute("data-status", "critical")
    await expect(page.locator("#health-dialog .health-reasons li")).to_have_text(
        ["the database is unreachable (x)"]
    )
    await shots.take("critical")
    await page.locator("#health-dialog").get_by_role("button", name="Close").click()

    # And the real API: whatever it says, the badge says the same.
    await page.unroute("**/v1/health")
    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30.0) as client:
        real = (await client.get("/v1/health")).json()["status"]
    await badge.click()
    await expect(badge).to_have_attribute("data-status", real)


async def test_every_form_starts_its_kind_and_the_gallery_shows_each(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "forms")
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    form = page.locator("#job-form")
    result = form.locator(".form-result")

    # Inline validation: nothing is sent without a prompt; the message goes with the next try.
    await form.get_by_label("Kind").select_option("generation")
    await form.get_by_label("Prompt").fill("")
    await form.locator("#job-submit").click()
    await expect(form.locator("#err-prompt")).to_have_text("Write a prompt.")
    await expect(form.get_by_label("Prompt")).to_have_attribute("aria-invalid", "true")
    await expect(result).to_have_text("Fix the fields marked above.")
    await shots.take("inline-validation")

    gen = await start_job(
        page, "generation", Prompt="a red fox in the snow", Width="64", Height="64"
    )
    await expect(form.locator("#err-prompt")).to_have_text("")
    tile = await tile_succeeded(page, gen)
    image = tile.locator("img")
    await expect(image).to_have_attribute("src", re.compile(r"/outputs/0/thumbnail\?token="))
    await expect(image).to_have_attribute("loading", "lazy")
    await expect(tile.locator(".dims")).to_have_text(f"64 {X} 64")
    await image_loaded(image)

    # The full image opens in a dialog, by its own link (not the thumbnail's).
    await tile.get_by_role("button", name=re.compile("^Open output 0")).click()
    viewer = page.locator("#viewer")
    await expect(viewer.locator("img")).to_have_attribute("src", re.compile(r"/outputs/0\?token="))
    await shots.take("viewer")
    await viewer.get_by_role("button", name="Close").click()

    # An upscale and an edit of that output, a video, a training: each started by its form.
    up = await start_job(page, "upscale", previous=gen, Output=f"{gen}:0", Scale="2")
    await expect(result).to_have_text(re.compile(r"^Started upscale job"))
    edit = await start_job(page, "edit", previous=up, Prompt="make it blue", Output=f"{gen}:0")
    video = await start_job(page, "video", previous=edit, Prompt="a fox running")
    await form.get_by_label("Kind").select_option("training")
    await expect(form.get_by_label("Destination model")).to_be_visible()
    training = await start_job(
        page, "training", previous=video,
        **{"Destination model": "autosync/root-fox-lora", "Training images": "https://x/y.zip"},
    )  # fmt: skip
    for job_id in (up, edit, video, training):
        await tile_succeeded(page, job_id)
    await expect(page.locator(f'.tile[data-job-id="{video}"] video')).to_have_count(1)
    train = page.locator(f'.tile[data-job-id="{training}"]')
    await expect(train.locator(".training-model")).to_contain_text("autosync/root-fox-lora:")
    await expect(train.locator(".training-size")).to_contain_text("stored files")
    await shots.take("gallery")

    # A 422 from the API lands next to its field: a training into someone else's model.
    await form.get_by_label("Destination model").fill("someone/else")
    await form.locator("#job-submit").click()
    await expect(form.locator("#err-destination")).to_contain_text("autosync/")
    await expect(result).to_contain_text("Could not start")
    await shots.take("api-422-inline")

    # The gallery's kind filter.
    await page.locator("#g-kind").select_option("training")
    await expect(page.locator("#gallery")).to_have_attribute(
        "data-query", re.compile("kind=training")
    )
    await expect(page.locator("#gallery .tile")).not_to_have_count(0)
    kinds = await page.locator("#gallery .tile").evaluate_all("ts => ts.map(t => t.dataset.kind)")
    assert set(kinds) == {"training"}, kinds
    await page.locator("#g-kind").select_option("")

    # Before / after: slider, keyboard, synchronized zoom, downloads of both.
    up_tile = page.locator(f'.tile[data-job-id="{up}"]')
    await up_tile.get_by_role("button", name=re.compile("^Compare")).click()
    compare = page.locator("#compare")
    await expect(compare).to_be_visible()
    await expect(compare.locator(".stat-before")).to_have_text(f"64 {X} 64 px · 0.004 MP")
    await expect(compare.locator(".stat-after")).to_have_text(f"128 {X} 128 px · 0.016 MP")
    await expect(compare.locator(".stat-factor")).to_have_text(
        f"4.0{X} the pixels (2.0{X} per side)"
    )
    view = compare.locator(".compare-view")
    await view.focus()
    await page.keyboard.press("ArrowLeft")
    await expect(compare.get_by_label("Divider position")).to_have_value("45")
    await page.keyboard.press("+")
    await expect(view).to_have_attribute("data-zoom", "1.25")
    # One zoom for both images: the same transform.
    transforms = await compare.locator("img").evaluate_all(
        "imgs => imgs.map(i => getComputedStyle(i.closest('.after-layer') ? i : i.parentElement).transform)"
    )
    assert transforms[0] == transforms[1] != "none", transforms
    await expect(compare.get_by_role("link", name="Download before")).to_have_attribute(
        "href", re.compile(r"/outputs/0\?token=")
    )
    await expect(compare.get_by_role("link", name="Download after")).to_have_attribute(
        "href", re.compile(rf"/v1/jobs/{up}/outputs/0\?token=")
    )
    await shots.take("compare-zoomed")
    await compare.get_by_role("button", name="Close").click()

    # No comparison without a source: an upscale of an image that can't be loaded.
    async with e2e.api("admin") as api:
        lost = await create(
            api, kind="upscale", input={"image": "https://example.invalid/gone.png"}
        )
        await wait_job(api, lost["id"])
    lost_tile = await tile_succeeded(page, lost["id"])
    await expect(lost_tile.locator(".no-compare")).to_be_visible(timeout=15_000)
    await expect(lost_tile.get_by_role("button", name=re.compile("^Compare"))).to_have_count(0)


async def test_history_filters_pages_and_retry(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "history")
    async with e2e.api("bob") as api:
        jobs = await asyncio.gather(
            *[create(api, input={"prompt": f"bob {n}"}) for n in range(4)],
            create(api, provider="fal", input={"prompt": "bob at fal"}),
            create(api, input={"prompt": "bob fails", "_emulator": {"fail": "NSFW content"}}),
        )
        done = await asyncio.gather(*[wait_job(api, j["id"]) for j in jobs])
    failed = done[-1]
    assert failed["status"] == "failed", failed
    fal = done[-2]

    async with e2e.api("bob") as api:
        page_one = (await api.get("/v1/jobs", params={"limit": 4})).json()
        page_two = (
            await api.get("/v1/jobs", params={"limit": 4, "cursor": page_one["next_cursor"]})
        ).json()

    def ids(page: dict[str, Any]) -> list[str]:
        return [job["id"] for job in page["items"]]

    await connect(page, e2e.stack.api_url, KEYS["bob"], history_page=4)
    history = page.locator("#history")
    listed = history.locator(".job")
    await expect(listed).to_have_count(4)

    async def shown() -> list[str]:
        found: list[str] = await listed.evaluate_all("js => js.map(j => j.dataset.jobId)")
        return found

    assert await shown() == ids(page_one)
    await shots.take("first-page")

    # Paging by cursor: the next page holds the older ones, "Newest" goes back.
    await page.get_by_role("button", name="Older").click()
    await expect(page.locator("#history-page")).to_have_text("page 2")
    await expect(listed).to_have_count(len(page_two["items"]))
    assert await shown() == ids(page_two), (await shown(), ids(page_two), ids(page_one))
    await page.get_by_role("button", name="Newest").click()
    await expect(page.locator("#history-page")).to_have_text("page 1")
    await expect(listed).to_have_count(4)

    # Filters change what is listed.
    filters = page.locator("#history-filters")
    await filters.get_by_label("Provider").select_option("fal")
    # The list says which query it shows once its answer is drawn.
    await expect(history).to_have_attribute("data-query", "provider=fal")
    await expect(history.locator(f'.job[data-job-id="{fal["id"]}"]')).to_be_visible()
    metas = await history.locator(".job-meta").all_text_contents()
    assert metas and all(m.startswith("fal") for m in metas), metas
    await shots.take("provider-fal")
    await filters.get_by_label("Provider").select_option("")
    await filters.get_by_label("Status").select_option("failed")
    await expect(history).to_have_attribute("data-query", "status=failed")
    row = history.locator(f'.job[data-job-id="{failed["id"]}"]')
    await expect(row.locator(".job-error")).to_contain_text("NSFW")
    statuses = await listed.evaluate_all("js => js.map(j => j.dataset.status)")
    assert set(statuses) == {"failed"}, statuses
    await filters.get_by_label("From").fill("2999-01-01")
    await filters.get_by_role("button", name="Apply").click()
    await expect(history).to_have_attribute("data-query", re.compile(r"created_from=299"))
    await expect(listed).to_have_count(0)
    await expect(page.locator("#history-empty")).to_be_visible()
    await filters.get_by_label("From").fill("")
    await filters.get_by_role("button", name="Apply").click()
    await expect(row).to_be_visible()

    # Retry makes a new job linked to the failed one, in the queue at once.
    await row.get_by_role("button", name=re.compile("^Retry")).click()
    linked = page.locator(f'.job[data-rerun-of="{failed["id"]}"]').first
    await expect(linked).to_be_visible(timeout=15_000)
    await expect(linked.locator(".job-links")).to_contain_text(f"retry of {failed['id'][:8]}")
    await expect(row.locator(".job-links")).to_contain_text("retried as")
    await shots.take("retried")
    new_id = await linked.get_attribute("data-job-id")
    assert new_id and new_id != failed["id"]
    async with e2e.api("bob") as api:
        again = (await api.get(f"/v1/jobs/{new_id}")).json()
    assert again.get("rerun_of") == failed["id"], again


async def test_sync_quick_run_summary_and_schedule_lifecycle(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "sync")
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    form = page.locator("#sync-form")
    await form.get_by_label("Company").select_option("globex")
    await form.get_by_role("button", name="Quick incremental sync").click()
    run_id = await started(form.locator(".form-result"), "data-run-id")
    run = page.locator(f'.run[data-run-id="{run_id}"]')
    await expect(run.locator(".run-head .status")).to_have_text("DONE", timeout=RUN_WAIT_MS)
    await expect(run.locator(".run-title")).to_contain_text("globex · incremental")
    await expect(run.locator(".run-summary")).to_contain_text(
        re.compile(r"^Finished in \d+ s: \d+/\d+ modules done")
    )
    await shots.take("incremental-done")

    panel = page.locator("#schedules-panel")
    sform = page.locator("#schedule-form")
    await sform.get_by_label("Company").select_option("acme")
    await sform.get_by_label("Every").fill("60")
    await sform.get_by_label("start paused").check()
    await sform.get_by_role("button", name="Create schedule").click()
    await expect(sform.locator(".form-result")).to_have_text("Created: acme every 60 min.")
    item = panel.locator('.schedule[data-company="acme"]')
    await expect(item).to_have_attribute("data-paused", "true")
    await shots.take("schedule-created")
    await item.get_by_role("button", name="Resume the schedule of acme").click()
    await expect(item).to_have_attribute("data-paused", "false")
    await item.get_by_label("Every (minutes)").fill("15")
    await item.get_by_role("button", name="Save").click()
    await expect(item).to_contain_text("every 15 min")
    await item.get_by_role("button", name="Pause the schedule of acme").click()
    await expect(item).to_have_attribute("data-paused", "true")
    await item.get_by_role("button", name="Run now the schedule of acme").click()
    await expect(page.locator("#toasts")).to_contain_text("Started a run of acme")
    # The run it started shows among the runs, marked scheduled.
    await expect(page.locator(".run .run-title", has_text="scheduled").first).to_be_visible(
        timeout=RUN_WAIT_MS
    )
    await shots.take("schedule-triggered")
    await item.get_by_role("button", name="Delete the schedule of acme").click()
    confirm = page.locator("#confirm")
    await expect(confirm).to_contain_text("Delete the schedule of acme?")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(item).to_have_count(0)
    async with e2e.api("admin") as api:
        assert (await api.get("/v1/schedules/acme")).status_code == 404


async def test_pull_sync_panel_lists_clients_and_syncs_all(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "pull-sync")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every pull fails
    async with e2e.api("admin") as api:
        response = await api.post(
            "/v1/pull-sync/clients", json={"client_url": dead, "user_id": "user_dead"}
        )
        assert response.status_code in (200, 201), response.text
        client_id = response.json()["id"]
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    row = page.locator(f'#pull-clients tr[data-client-id="{client_id}"]')
    await expect(row).to_have_attribute("data-active", "true")
    await expect(row.locator(".failures")).to_have_text("0")
    await shots.take("registered")
    await page.get_by_role("button", name="Sync all now").click()
    await expect(page.locator("#pull-result")).to_contain_text(
        re.compile(r"Pulled \d+ clients: .*\d+ failed"), timeout=RUN_WAIT_MS
    )
    await expect(row.locator(".failures")).not_to_have_text("0")
    await expect(row.locator(".client-error")).not_to_be_empty()
    await shots.take("synced")
    async with e2e.api("admin") as api:
        assert (await api.delete(f"/v1/pull-sync/clients/{client_id}")).status_code == 204
    # Gone from the page by the live stream (pull-sync:* topic), without a reload.
    await expect(row).to_have_count(0, timeout=15_000)


async def test_recovery_buttons_report_the_sweep(e2e: E2E, page: Page) -> None:
    shots = Shots(page, "recovery")
    async with e2e.api("admin") as api:
        marked = await wait_job(api, (await create(api, input={"prompt": "lost outputs"}))["id"])

    # A job the sweep marked (its outputs gone): the history says so, with the reason.
    async def as_marked(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for job in body["items"]:
            if job["id"] == marked["id"]:
                job["recovery_state"] = "needs_regeneration"
                job["recovery_reason"] = "stored objects are missing"
        await route.fulfill(response=response, json=body)

    await page.route(re.compile(r"/v1/jobs\?limit="), as_marked)
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    chip = page.locator(f'#history .job[data-job-id="{marked["id"]}"] .recovery')
    await expect(chip).to_have_text("needs regeneration")
    await expect(chip).to_have_attribute("title", "stored objects are missing")
    await page.get_by_role("button", name="Check now").click()
    result = page.locator("#recovery-result")
    await expect(result).to_contain_text(
        re.compile(r"^Check: \d+ jobs checked"), timeout=RUN_WAIT_MS
    )
    await page.get_by_role("button", name="Run the sweep").click()
    await expect(result).to_contain_text(
        re.compile(r"^Sweep: \d+ jobs checked"), timeout=RUN_WAIT_MS
    )
    await shots.take("swept")


@pytest.mark.parametrize("width", [360, 1400])
async def test_no_horizontal_overflow(e2e: E2E, page: Page, width: int) -> None:
    shots = Shots(page, f"layout-{width}")
    async with e2e.api("admin") as api:
        await wait_job(api, (await create(api, input={"prompt": "for the layout " * 12}))["id"])
    await page.set_viewport_size({"width": width, "height": 900})
    await connect(page, e2e.stack.api_url, KEYS["admin"])
    await expect(page.locator("#gallery .tile").first).to_be_visible(timeout=JOB_WAIT_MS)
    await expect(page.locator("#history .job").first).to_be_visible()
    await no_horizontal_overflow(page)
    # Every control in the header stays on screen (the key form's "Forget" among them).
    forget = await page.get_by_role("button", name="Forget").bounding_box()
    assert forget and forget["x"] + forget["width"] <= width, forget
    if width < 1000:
        # The sync runs come before the history and the gallery on a narrow screen.
        sync = await page.locator("#sync-panel").bounding_box()
        gallery = await page.locator("#gallery-panel").bounding_box()
        assert sync and gallery and sync["y"] < gallery["y"]
    await shots.take("admin")
