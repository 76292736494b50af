"""Recovery end to end: the sweep restores lost objects, marks expired ones, adopts orphans."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import httpx
import pytest

from core.contracts import media_job_workflow_id
from providers.replicate import EMULATOR_TOKEN
from tests.e2e.conftest import E2E
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

EMULATOR_AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}


def delete_stored(e2e: E2E, key: str) -> None:
    """Lose a stored object behind the system's back."""
    config = e2e.stack.config
    if config.storage_backend == "s3":
        s3 = boto3.client(
            "s3", endpoint_url=config.s3_endpoint_url, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        s3.delete_object(Bucket=config.s3_bucket, Key=key)
    else:
        (e2e.stack.data_dir / "storage" / key).unlink()


async def sweep(e2e: E2E, what: str) -> dict[str, Any]:
    async with e2e.api("admin") as admin:
        response = await admin.post(f"/v1/recovery/{what}", timeout=90)
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        return report


def item_of(report: dict[str, Any], job_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [i for i in report["items"] if i["job_id"] == job_id]
    assert len(found) == 1, report
    return found[0]


async def wait_recovered(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once a restore has stored its outputs again (`recovered`), or as it last was."""
    again: dict[str, Any] = {}
    for _ in range(150):
        again = (await api.get(f"/v1/jobs/{job_id}")).json()
        if again["status"] == "succeeded" and again["recovery_state"] == "recovered":
            break
        await asyncio.sleep(0.2)
    return again


async def test_a_lost_object_is_copied_again_while_its_url_lives(e2e: E2E) -> None:
    async with e2e.api("alice") as api:
        job = await wait_job(api, (await create(api))["id"])
        key = job["outputs"][0]["key"]
        delete_stored(e2e, key)
        check = item_of(await sweep(e2e, "check"), job["id"])
        assert (check["problem"], check["action"], check["result"]) == (
            "objects_missing", "restore", None,
        )  # fmt: skip
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["status"] == "succeeded"
        done = item_of(await sweep(e2e, "trigger"), job["id"])
        assert (done["action"], done["result"]) == ("restore", "started")
        again = await wait_recovered(api, job["id"])
        assert again["status"] == "succeeded" and again["recovery_reason"] == "objects_missing"
        assert again["outputs"][0]["key"] == key
        stored = await api.get(f"/v1/jobs/{job['id']}/outputs/0", follow_redirects=True)
        assert stored.status_code == 200 and stored.content
    # the next sweep finds nothing wrong with it
    assert all(i["job_id"] != job["id"] for i in (await sweep(e2e, "check"))["items"])


async def test_expired_urls_mark_the_job_for_regeneration(e2e: E2E) -> None:
    async with e2e.api("alice") as api, e2e.emulator() as emulator:
        job = await wait_job(api, (await create(api))["id"])
        delete_stored(e2e, job["outputs"][0]["key"])
        expired = await emulator.post(
            f"/_emulator/predictions/{job['provider_job_id']}/expire", headers=EMULATOR_AUTH
        )
        assert expired.status_code == 200
        item = item_of(await sweep(e2e, "trigger"), job["id"])
        assert (item["action"], item["result"]) == ("needs_regeneration", "needs_regeneration")
        marked = (await api.get(f"/v1/jobs/{job['id']}")).json()
        assert marked["recovery_state"] == "needs_regeneration"
        assert "expired" in marked["recovery_reason"] or "removed" in marked["recovery_reason"]


async def test_a_job_whose_workflow_is_gone_is_adopted_and_finishes(e2e: E2E) -> None:
    async with e2e.api("alice") as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"processing_seconds": 4}})
        # Submitted is enough: with webhooks arriving, nothing polls to see `processing`.
        await wait_job(api, job["id"], {"submitted", "processing"})
        await e2e.temporal.get_workflow_handle(media_job_workflow_id(job["id"])).terminate(
            "lost in an incident"
        )
        item = item_of(await sweep(e2e, "trigger"), job["id"])
        assert (item["problem"], item["action"], item["result"]) == (
            "stranded", "adopt", "started",
        )  # fmt: skip
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded" and done["outputs"]


async def test_an_orphan_at_the_provider_is_adopted_with_its_legacy_kind(e2e: E2E) -> None:
    async with e2e.api("admin") as api, e2e.emulator() as emulator:
        started = await emulator.post(
            "/v1/models/nightmareai/real-esrgan/predictions",
            json={"input": {"prompt": "[UPSCALED] an old photo"}},
            headers=EMULATOR_AUTH,
        )
        assert started.status_code in (200, 201), started.text
        prediction_id = started.json()["id"]
        for body, code, hint in (
            ({"provider": "nope", "provider_job_id": prediction_id}, 422, "provider"),
            ({"provider": "replicate", "provider_job_id": "no-such-job"}, 422, "provider_job_id"),
        ):
            response = await api.post("/v1/jobs/adopt", json=body)
            assert response.status_code == code and hint in response.text, response.text
        adopted = await api.post(
            "/v1/jobs/adopt",
            json={"provider": "replicate", "provider_job_id": prediction_id,
                  "prompt": "[UPSCALED] an old photo"},
        )  # fmt: skip
        assert adopted.status_code == 202, adopted.text
        job = adopted.json()
        assert job["kind"] == "upscale" and job["provider_job_id"] == prediction_id
        again = await api.post(
            "/v1/jobs/adopt", json={"provider": "replicate", "provider_job_id": prediction_id}
        )
        assert again.status_code == 409 and job["id"] in again.text
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded"
        assert done["outputs"][0]["key"].startswith(f"upscaled/root/{job['id']}_0.")


async def test_recovery_is_for_admins(e2e: E2E) -> None:
    async with e2e.api("alice") as api:
        for what in ("check", "trigger"):
            assert (await api.post(f"/v1/recovery/{what}")).status_code == 403


async def test_urls_that_expire_while_the_worker_is_down(e2e: E2E) -> None:
    async with e2e.api("alice") as api:
        slow = {"processing_seconds": 120}  # they finish when the test says so
        lives = await create(
            api, input={"prompt": "a", "_emulator": {**slow, "file_ttl_seconds": 120}}
        )
        dies = await create(
            api, input={"prompt": "b", "_emulator": {**slow, "file_ttl_seconds": 1}}
        )
        for job in (lives, dies):
            await wait_job(api, job["id"], {"submitted", "processing"})
        await asyncio.to_thread(e2e.stack.kill_worker)
        try:
            async with e2e.emulator() as emulator:
                for job in (lives, dies):  # both finish at the provider meanwhile
                    provider_id = (await api.get(f"/v1/jobs/{job['id']}")).json()["provider_job_id"]
                    await emulator.post(
                        f"/_emulator/predictions/{provider_id}/complete",
                        json={"status": "succeeded"}, headers=EMULATOR_AUTH,
                    )  # fmt: skip
            await asyncio.sleep(2)  # `dies`'s files are gone now
        finally:
            await asyncio.to_thread(e2e.stack.start_worker)
        assert (await wait_job(api, lives["id"]))["status"] == "succeeded"
        failed = await wait_job(api, dies["id"])
        assert failed["status"] == "failed" and failed["provider_status"] == "succeeded"
        item = item_of(await sweep(e2e, "trigger"), dies["id"])
        assert (item["problem"], item["action"]) == ("store_failed", "needs_regeneration")
        marked = (await api.get(f"/v1/jobs/{dies['id']}")).json()
        assert marked["recovery_state"] == "needs_regeneration" and marked["recovery_reason"]
