"""Every result stored, whole: trainings' files, recovery of a lost one, SIGTERM mid-copy.

A training's weights (Replicate) or LoRA file (fal) are copied under `trainings/` like any
output, with the sha256 of the provider's bytes; a worker stopped (SIGTERM) in the middle of a
copy leaves one complete output, never half of one.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import E2E, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, prediction, wait_job
from tests.e2e.test_recovery import delete_stored, item_of, sweep, wait_recovered

pytestmark = pytest.mark.e2e

REPLICATE_TRAINING = {"destination": "autosync/alice-my-lora", "input_images": "https://x/y.zip"}
FAL_TRAINING = {"images_data_url": "https://example.com/faces.zip"}


async def provider_sha256(url: str) -> str:
    """The sha256 of the file as the provider (the emulator) serves it."""
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return hashlib.sha256(response.content).hexdigest()


async def stored_sha256(api: httpx.AsyncClient, job_id: str, index: int = 0) -> str:
    """The sha256 of the stored copy, read back through the API's signed output link."""
    response = await api.get(f"/v1/jobs/{job_id}/outputs/{index}", follow_redirects=True)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def assert_training_stored(job: dict[str, Any], field: str) -> dict[str, Any]:
    assert job["status"] == "succeeded", job
    key = f"trainings/alice/{job['id']}_0.tar"
    assert [o["key"] for o in job["outputs"]] == [key], job
    output = job["outputs"][0]
    assert output["content_type"] == "application/x-tar" and output["url"], output
    assert job["storage_context"] == "trainings"
    # output_data keeps the provider's answer, and says where each of its files is kept now.
    assert job["output_data"]["stored"] == {field: key}, job["output_data"]
    output_data: dict[str, Any] = job["output_data"]
    return output_data


async def test_a_replicate_training_stores_its_weights(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, kind="training", input=dict(REPLICATE_TRAINING))
        done = await wait_job(api, job["id"])
        data = assert_training_stored(done, "weights")
        assert data["version"].startswith("autosync/alice-my-lora:")
        expected = await provider_sha256(data["weights"])
        assert done["outputs"][0]["sha256"] == expected
        assert await stored_sha256(api, job["id"]) == expected


async def test_a_fal_training_stores_its_lora_file(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, kind="training", provider="fal", input=dict(FAL_TRAINING))
        done = await wait_job(api, job["id"])
        data = assert_training_stored(done, "diffusers_lora_file")
        expected = await provider_sha256(data["diffusers_lora_file"])
        assert done["outputs"][0]["sha256"] == expected
        assert await stored_sha256(api, job["id"]) == expected


async def test_recovery_copies_a_trainings_lost_weights_again(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, kind="training", input=dict(REPLICATE_TRAINING))
        done = await wait_job(api, job["id"])
        key = done["outputs"][0]["key"]
        delete_stored(e2e, key)
        check = item_of(await sweep(e2e, "check"), job["id"])
        assert (check["problem"], check["action"]) == ("objects_missing", "restore")
        fixed = item_of(await sweep(e2e, "trigger"), job["id"])
        assert (fixed["action"], fixed["result"]) == ("restore", "started")
        again = await wait_recovered(api, job["id"])
        assert again["status"] == "succeeded" and again["recovery_reason"] == "objects_missing"
        assert again["outputs"][0]["key"] == key
        assert await stored_sha256(api, job["id"]) == done["outputs"][0]["sha256"]
    assert all(i["job_id"] != job["id"] for i in (await sweep(e2e, "check"))["items"])


@LOCAL_ONLY
async def test_sigterm_mid_copy_leaves_one_complete_output(e2e: E2E) -> None:
    """The worker is stopped (SIGTERM) while it streams a slow output: the copy finishes
    (graceful shutdown) or is retried cleanly by the next worker; either way the job ends with
    one output whose bytes are the provider's, and no partial file is left in storage."""
    faults = {"file_delay_seconds": 4, "file_bytes": 300_000}
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "a slow fox", "_emulator": faults})
        await wait_job(api, job["id"], {"storing"}, within=30)
        await asyncio.sleep(1.0)  # a second into a four-second download
        assert e2e.stack.worker is not None
        await asyncio.to_thread(e2e.stack.worker.stop)
        await asyncio.to_thread(e2e.stack.start_worker)
        # A retry, if the attempt didn't finish, waits out the store's heartbeat timeout.
        done = await wait_job(api, job["id"], within=300)
        assert done["status"] == "succeeded", done
        assert [o["key"] for o in done["outputs"]] == [f"generated/alice/{job['id']}_0.png"]
        source = (await prediction(e2e, done))["output"][0]
        expected = await provider_sha256(source)
        assert done["outputs"][0]["sha256"] == expected
        assert done["outputs"][0]["bytes"] >= 300_000
        assert await stored_sha256(api, job["id"]) == expected
    folder = e2e.stack.data_dir / "storage" / "generated" / "alice"
    leftovers = [p.name for p in folder.iterdir() if job["id"] in p.name]
    assert leftovers == [f"{job['id']}_0.png"], leftovers
