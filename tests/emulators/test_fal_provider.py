"""FalProvider and FalWebhooks against the fal emulator over real HTTP.

The provider submits, polls, reads results and cancels; webhooks land on the test receiver
and are verified with the keys the emulator publishes at `/.well-known/jwks.json`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.contracts import (
    TERMINAL_PHASES,
    JobKind,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    SubmitRequest,
)
from providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)
from providers.fal import FalProvider, FalWebhooks
from tests.emulators.fal_support import FAL_KEY, IMAGE_MODEL, VIDEO_MODEL
from tests.emulators.support import WebhookReceiver

pytest_plugins = ("tests.emulators.fal_fixtures",)

POLL_DEADLINE = 10.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


@pytest.fixture
async def control(fal_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The emulator's control API; global faults are cleared after each test."""
    async with httpx.AsyncClient(base_url=f"{fal_url}/_emulator", timeout=15) as client:
        yield client
        (await client.delete("/faults")).raise_for_status()


@pytest.fixture
def provider(http: httpx.AsyncClient, fal_url: str) -> FalProvider:
    return FalProvider(http, base_url=fal_url, api_key=FAL_KEY)


@pytest.fixture
def webhooks(http: httpx.AsyncClient, fal_url: str) -> FalWebhooks:
    return FalWebhooks(http, jwks_url=f"{fal_url}/.well-known/jwks.json", min_refresh_seconds=0)


def request(
    model: str = IMAGE_MODEL,
    kind: JobKind = JobKind.GENERATION,
    webhook_url: str | None = None,
    **payload: Any,
) -> SubmitRequest:
    return SubmitRequest(
        job_id=uuid.uuid4().hex,
        kind=kind,
        provider="fal",
        model=model,
        input={"prompt": "a lighthouse", **payload},
        webhook_url=webhook_url,
        webhook_events=[],
    )


def ref_of(submit: SubmitRequest, snapshot: ProviderSnapshot) -> ProviderRef:
    return ProviderRef(
        submit.job_id, submit.kind, "fal", snapshot.provider_job_id, model=submit.model
    )


async def until_terminal(provider: FalProvider, ref: ProviderRef) -> ProviderSnapshot:
    """Poll like the workflow does, until a terminal phase (a deadline, not a timing check)."""
    async with asyncio.timeout(POLL_DEADLINE):
        while True:
            snapshot = await provider.get(ref)
            if snapshot.phase in TERMINAL_PHASES:
                return snapshot
            await asyncio.sleep(0.05)


async def submitted(provider: FalProvider, submit: SubmitRequest) -> ProviderRef:
    snapshot = await provider.submit(submit)
    assert (snapshot.provider_status, snapshot.phase) == ("IN_QUEUE", ProviderPhase.QUEUED)
    return ref_of(submit, snapshot)


async def test_submit_poll_and_result(provider: FalProvider, http: httpx.AsyncClient) -> None:
    ref = await submitted(provider, request(num_images=2))
    phases = {(await provider.get(ref)).phase}
    final = await until_terminal(provider, ref)
    phases.add(final.phase)
    assert phases <= {ProviderPhase.QUEUED, ProviderPhase.RUNNING, ProviderPhase.SUCCEEDED}
    assert final.phase == ProviderPhase.SUCCEEDED
    assert final.provider_job_id == ref.provider_job_id
    assert len(final.output_urls) == 2
    for url in final.output_urls:
        content = (await http.get(url)).raise_for_status().content
        assert content.startswith(b"\x89PNG")


async def test_video_and_training_outputs(provider: FalProvider) -> None:
    video = await until_terminal(
        provider, await submitted(provider, request(VIDEO_MODEL, JobKind.VIDEO))
    )
    assert [url.rsplit("/", 1)[1] for url in video.output_urls] == ["output.mp4"]

    trainer = request("fal-ai/flux-lora-fast-training", JobKind.TRAINING)
    trained = await until_terminal(provider, await submitted(provider, trainer))
    # A training's files are outputs too: they are stored like images (issue 10).
    assert [url.rsplit("/", 1)[1] for url in trained.output_urls] == ["lora.tar"]
    assert trained.output_data["diffusers_lora_file"] == trained.output_urls[0]


async def test_model_and_platform_failures(provider: FalProvider) -> None:
    invalid = request(_emulator={"fail": "prompt is too long"})
    failed = await until_terminal(provider, await submitted(provider, invalid))
    assert failed.phase == ProviderPhase.FAILED
    assert failed.error is not None and "prompt is too long" in failed.error

    crashed = request(_emulator={"fail": "CUDA out of memory", "fail_status_code": 500})
    failed = await until_terminal(provider, await submitted(provider, crashed))
    assert failed.phase == ProviderPhase.FAILED
    assert failed.error == "CUDA out of memory (internal_error)"


async def test_cancel_a_queued_request(provider: FalProvider) -> None:
    ref = await submitted(provider, request(_emulator={"stay_queued": True}))
    cancelled = await provider.cancel(ref)
    assert (cancelled.provider_status, cancelled.phase) == (
        "CANCELLATION_REQUESTED",
        ProviderPhase.CANCELED,
    )
    assert (await provider.get(ref)).phase == ProviderPhase.CANCELED


async def test_cancel_after_completion_reports_the_real_ending(provider: FalProvider) -> None:
    ref = await submitted(provider, request())
    await until_terminal(provider, ref)
    late = await provider.cancel(ref)  # fal answers 400 ALREADY_COMPLETED
    assert late.phase == ProviderPhase.SUCCEEDED and late.output_urls


async def test_unknown_requests_and_bad_keys_are_rejected(
    provider: FalProvider, http: httpx.AsyncClient, fal_url: str
) -> None:
    ghost = ProviderRef("j", JobKind.GENERATION, "fal", str(uuid.uuid4()), model=IMAGE_MODEL)
    with pytest.raises(ProviderRejected):
        await provider.cancel(ghost)
    with pytest.raises(ProviderRejected):
        await provider.get(ghost)
    stranger = FalProvider(http, base_url=fal_url, api_key="not-the-key")
    with pytest.raises(ProviderRejected) as raised:
        await stranger.submit(request())
    assert raised.value.status_code == 401


async def test_rate_limits_and_server_errors_map_to_retryable_errors(
    provider: FalProvider, control: httpx.AsyncClient
) -> None:
    faults = {"rate_limits": 1, "retry_after_seconds": 2}
    (await control.put("/faults", json=faults)).raise_for_status()
    with pytest.raises(ProviderRateLimited) as limited:
        await provider.submit(request())
    assert limited.value.retry_after == 2  # from the Retry-After header

    submit = request(_emulator={"server_errors": 1, "errors_on": ["status"]})
    ref = await submitted(provider, submit)
    with pytest.raises(ProviderUnavailable):
        await provider.get(ref)
    assert (await until_terminal(provider, ref)).phase == ProviderPhase.SUCCEEDED


async def test_expired_results_and_files(
    provider: FalProvider, control: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    ref = await submitted(provider, request())
    done = await until_terminal(provider, ref)
    (await control.post(f"/requests/{ref.provider_job_id}/expire")).raise_for_status()
    assert (await http.get(done.output_urls[0])).status_code == 404
    gone = await provider.get(ref)
    assert gone.phase == ProviderPhase.SUCCEEDED and gone.data_removed

    short = request(_emulator={"file_ttl_seconds": 0})
    done = await until_terminal(provider, await submitted(provider, short))
    assert (await http.get(done.output_urls[0])).status_code == 404


async def test_webhook_verifies_and_matches_the_poll(
    provider: FalProvider, webhooks: FalWebhooks, receiver: WebhookReceiver
) -> None:
    name = uuid.uuid4().hex
    ref = await submitted(provider, request(webhook_url=receiver.url(name)))
    polled = await until_terminal(provider, ref)
    [delivery] = await asyncio.to_thread(receiver.wait_count, name, 1)

    assert await webhooks.verify(delivery.headers, delivery.body) == ref.provider_job_id
    pushed = webhooks.parse(delivery.body)
    assert pushed.provider_job_id == polled.provider_job_id
    assert (pushed.phase, pushed.output_urls) == (polled.phase, polled.output_urls)

    with pytest.raises(WebhookRejected):
        await webhooks.verify(delivery.headers, delivery.body + b" ")


async def test_failed_and_cancelled_webhooks_parse_to_their_phases(
    provider: FalProvider, webhooks: FalWebhooks, receiver: WebhookReceiver
) -> None:
    failing, cancelled = uuid.uuid4().hex, uuid.uuid4().hex
    await submitted(
        provider, request(webhook_url=receiver.url(failing), _emulator={"fail": "nope"})
    )
    ref = await submitted(
        provider, request(webhook_url=receiver.url(cancelled), _emulator={"stay_queued": True})
    )
    await provider.cancel(ref)
    for name, phase in ((failing, ProviderPhase.FAILED), (cancelled, ProviderPhase.CANCELED)):
        [delivery] = await asyncio.to_thread(receiver.wait_count, name, 1)
        await webhooks.verify(delivery.headers, delivery.body)
        assert webhooks.parse(delivery.body).phase == phase


async def test_key_rotation_is_picked_up_from_the_jwks(
    provider: FalProvider,
    webhooks: FalWebhooks,
    receiver: WebhookReceiver,
    control: httpx.AsyncClient,
) -> None:
    before, after = uuid.uuid4().hex, uuid.uuid4().hex
    await submitted(provider, request(webhook_url=receiver.url(before)))
    [first] = await asyncio.to_thread(receiver.wait_count, before, 1)
    await webhooks.verify(first.headers, first.body)  # caches the current JWKS

    (await control.post("/keys/rotate", json={"keep_old": False})).raise_for_status()
    await submitted(provider, request(webhook_url=receiver.url(after)))
    [second] = await asyncio.to_thread(receiver.wait_count, after, 1)
    assert await webhooks.verify(second.headers, second.body)  # refetched once, then verified
    with pytest.raises(WebhookRejected):
        await webhooks.verify(first.headers, first.body)  # the old key was withdrawn
