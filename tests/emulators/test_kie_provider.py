"""`KieProvider` against the KIE emulator over real HTTP: submit, poll, result and errors."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from core.contracts import (
    PHASE_RANK,
    TERMINAL_PHASES,
    JobKind,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    SubmitRequest,
)
from providers.base import ProviderRateLimited, ProviderRejected, ProviderUnavailable
from providers.http_errors import DEFAULT_RETRY_AFTER
from providers.kie import KieProvider
from tests.emulators.kie_support import IMAGE_MODEL, VIDEO_MODEL, record_async, result_urls

pytest_plugins = ["tests.emulators.kie_fixtures"]


def request(
    faults: dict[str, Any] | None = None,
    *,
    model: str = IMAGE_MODEL,
    kind: JobKind = JobKind.GENERATION,
    webhook_url: str | None = None,
) -> SubmitRequest:
    payload: dict[str, Any] = {"prompt": "a red fox", "seed": uuid.uuid4().hex}
    if faults is not None:
        payload["_emulator"] = faults
    return SubmitRequest(
        job_id=uuid.uuid4().hex,
        kind=kind,
        provider="kie",
        model=model,
        input=payload,
        webhook_url=webhook_url,
        webhook_events=["completed"],
    )


def ref_of(snapshot: ProviderSnapshot) -> ProviderRef:
    return ProviderRef(
        job_id="job",
        kind=JobKind.GENERATION,
        provider="kie",
        provider_job_id=snapshot.provider_job_id,
    )


async def poll_until_terminal(provider: KieProvider, ref: ProviderRef) -> list[ProviderSnapshot]:
    """Every snapshot seen while polling, ending with a terminal one (10 s deadline)."""
    seen: list[ProviderSnapshot] = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1].phase not in TERMINAL_PHASES:
        if time.monotonic() > deadline:  # a deadline, not a timing assertion
            raise AssertionError(f"no terminal phase; last: {seen[-1:]}")
        seen.append(await provider.get(ref))
        await asyncio.sleep(0.03)
    return seen


async def test_submit_poll_and_result(
    kie_provider: KieProvider, kie_http: httpx.AsyncClient, kie_url: str
) -> None:
    submitted = await kie_provider.submit(
        request(webhook_url="http://127.0.0.1:9/hooks/kie?job_id=j")
    )
    assert (submitted.provider_status, submitted.phase) == ("waiting", ProviderPhase.QUEUED)
    assert submitted.provider_job_id.startswith("task_")
    task = await record_async(kie_http, kie_url, submitted.provider_job_id)
    param = json.loads(task["param"])
    assert param["callBackUrl"] == "http://127.0.0.1:9/hooks/kie?job_id=j"

    seen = await poll_until_terminal(kie_provider, ref_of(submitted))
    ranks = [PHASE_RANK[s.phase] for s in seen]
    assert ranks == sorted(ranks)  # phases only move forward
    done = seen[-1]
    assert done.phase == ProviderPhase.SUCCEEDED and done.error is None
    finished = await record_async(kie_http, kie_url, submitted.provider_job_id)
    assert done.output_urls == result_urls(finished)
    assert done.completed_at is not None
    image = await kie_http.get(done.output_urls[0])
    assert image.content.startswith(b"\x89PNG")


async def test_video_result(kie_provider: KieProvider, kie_http: httpx.AsyncClient) -> None:
    submitted = await kie_provider.submit(request(model=VIDEO_MODEL, kind=JobKind.VIDEO))
    done = (await poll_until_terminal(kie_provider, ref_of(submitted)))[-1]
    [url] = done.output_urls
    assert url.endswith(".mp4")
    assert (await kie_http.get(url)).content[4:8] == b"ftyp"


async def test_failed_task(kie_provider: KieProvider) -> None:
    submitted = await kie_provider.submit(request({"fail": "prompt blocked", "fail_code": "400"}))
    done = (await poll_until_terminal(kie_provider, ref_of(submitted)))[-1]
    assert (done.provider_status, done.phase) == ("fail", ProviderPhase.FAILED)
    assert done.error == "prompt blocked (failCode 400)"
    assert done.output_urls == []


async def test_rate_limited_create_waits_for_retry_after(kie_provider: KieProvider) -> None:
    with pytest.raises(ProviderRateLimited) as with_header:
        await kie_provider.submit(request({"rate_limits": 1, "retry_after_seconds": 3}))
    assert with_header.value.retry_after == 3
    throttled = request({"rate_limits": 1})
    with pytest.raises(ProviderRateLimited) as without_header:
        await kie_provider.submit(throttled)
    assert without_header.value.retry_after == DEFAULT_RETRY_AFTER
    # The same body goes through on the next try.
    assert (await kie_provider.submit(throttled)).phase == ProviderPhase.QUEUED


@pytest.mark.parametrize("code", [401, 402, 422, 433, 501, 505])
@pytest.mark.parametrize("mirrored", [False, True])
async def test_rejections_by_body_code(
    kie_provider: KieProvider, code: int, mirrored: bool
) -> None:
    faults = {"reject_code": code, "http_status_mirrors_code": mirrored}
    with pytest.raises(ProviderRejected, match=f"KIE code {code}") as caught:
        await kie_provider.submit(request(faults))
    assert caught.value.status_code == code


@pytest.mark.parametrize("code", [500, 455])
@pytest.mark.parametrize("mirrored", [False, True])
async def test_outages_are_retryable(kie_provider: KieProvider, code: int, mirrored: bool) -> None:
    faults = {"server_errors": 1, "server_error_code": code, "http_status_mirrors_code": mirrored}
    retried = request(faults)
    with pytest.raises(ProviderUnavailable, match=f"KIE code {code}"):
        await kie_provider.submit(retried)
    assert (await kie_provider.submit(retried)).phase == ProviderPhase.QUEUED


async def test_poll_errors(kie_provider: KieProvider) -> None:
    faults = {"rate_limits": 1, "server_errors": 1, "errors_on": ["record"]}
    ref = ref_of(await kie_provider.submit(request(faults)))
    with pytest.raises(ProviderRateLimited):
        await kie_provider.get(ref)
    with pytest.raises(ProviderUnavailable):
        await kie_provider.get(ref)
    assert (await kie_provider.get(ref)).provider_job_id == ref.provider_job_id


async def test_unknown_task_is_rejected(kie_provider: KieProvider) -> None:
    ref = ProviderRef(job_id="j", kind=JobKind.GENERATION, provider="kie", provider_job_id="task_x")
    with pytest.raises(ProviderRejected, match="recordInfo is null") as caught:
        await kie_provider.get(ref)
    assert caught.value.status_code == 422


async def test_wrong_api_key_is_rejected(kie_http: httpx.AsyncClient, kie_url: str) -> None:
    provider = KieProvider(kie_http, base_url=kie_url, api_key="wrong")
    with pytest.raises(ProviderRejected) as caught:
        await provider.submit(request())
    assert caught.value.status_code == 401


async def test_cancel_returns_the_current_snapshot_and_the_task_runs_on(
    kie_provider: KieProvider, kie_http: httpx.AsyncClient, kie_url: str
) -> None:
    submitted = await kie_provider.submit(request({"stay_waiting": True}))
    canceled = await kie_provider.cancel(ref_of(submitted))
    assert (canceled.provider_status, canceled.phase) == ("waiting", ProviderPhase.QUEUED)
    still = await record_async(kie_http, kie_url, submitted.provider_job_id)
    assert still["state"] == "waiting"


async def test_training_is_rejected_before_any_request(kie_provider: KieProvider) -> None:
    with pytest.raises(ProviderRejected, match="no training"):
        await kie_provider.submit(request(kind=JobKind.TRAINING))


async def test_unknown_route_is_a_rejection(kie_http: httpx.AsyncClient, kie_url: str) -> None:
    provider = KieProvider(kie_http, base_url=f"{kie_url}/wrong-prefix", api_key="k")
    with pytest.raises(ProviderRejected) as caught:
        await provider.submit(request())
    assert caught.value.status_code == 404
