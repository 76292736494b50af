"""Hostile outputs (issue 9): a user's own Replicate model answers with URLs aimed at us.

Anyone may run any Replicate model, including one they published whose `output` is
`http://127.0.0.1:<our port>/...` or the cloud metadata service. The emulator plays that model
(its `output_url` fault), a file host that redirects inward (`/_emulator/redirect`) and files
past MAX_OUTPUT_BYTES. Each job must end `failed` with the reason, and nothing of it may be
stored or served.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import E2E, E2E_BUCKET, E2E_ENV
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

CAP = int(E2E_ENV["MAX_OUTPUT_BYTES"])


async def objects_of(e2e: E2E, job_id: str) -> list[str]:
    """Every stored object whose key names the job (outputs and thumbnails)."""
    if e2e.s3 is not None:
        client = e2e.s3.client()
        listed = await asyncio.to_thread(client.list_objects_v2, Bucket=E2E_BUCKET)
        return [o["Key"] for o in listed.get("Contents", []) if job_id in o["Key"]]
    root = e2e.stack.data_dir / "storage"
    found = await asyncio.to_thread(lambda: [str(p) for p in root.rglob(f"*{job_id}*")])
    return found


async def run_hostile(e2e: E2E, faults: dict[str, Any]) -> dict[str, Any]:
    """A job on a model that behaves as `faults` say; its final state once nothing is kept.

    The faults are the emulator's global ones, kept until the job ends (the prediction is
    created when the worker submits it): the URL is the model's doing, not part of the job's
    input, which the API checks on its own.
    """
    async with e2e.api() as api, e2e.emulator() as emulator:
        (await emulator.put("/_emulator/faults", json=faults)).raise_for_status()
        try:
            job = await create(api, input={"prompt": "a fox"})
            done = await wait_job(api, job["id"])
        finally:
            (await emulator.delete("/_emulator/faults")).raise_for_status()
        assert done["status"] == "failed", done
        assert not done["outputs"]
        served = await api.get(f"/v1/jobs/{job['id']}/outputs/0")
        assert served.status_code == 404, served.text
    assert await objects_of(e2e, job["id"]) == []
    return done


async def test_an_output_on_our_own_ports_is_refused(e2e: E2E) -> None:
    # The API itself and the Temporal frontend.
    for url in (f"{e2e.stack.api_url}/v1/jobs", f"http://{e2e.stack.temporal_address}/"):
        done = await run_hostile(e2e, {"output_url": url})
        assert done["error"] == "output 0 refused: 127.0.0.1 is not a public address"


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/latest/meta-data/"],
)
async def test_an_output_on_the_metadata_service_is_refused(e2e: E2E, url: str) -> None:
    done = await run_hostile(e2e, {"output_url": url})
    assert done["error"] == "output 0 refused: 169.254.169.254 is not a public address"


async def test_an_allowed_file_host_that_redirects_inward_is_refused(e2e: E2E) -> None:
    """The emulator's origin is allowed (it serves the outputs); where it redirects is not."""
    inward = f"{e2e.stack.api_url}/v1/jobs"
    emulator_url = e2e.stack.provider_url("replicate")
    assert emulator_url is not None
    url = f"{emulator_url}/_emulator/redirect?to={quote(inward, safe='')}"
    done = await run_hostile(e2e, {"output_url": url})
    assert done["error"] == "output 0 refused: 127.0.0.1 is not a public address"


@pytest.mark.parametrize("without_length", [True, False], ids=["chunked", "content-length"])
async def test_an_output_past_max_output_bytes_is_not_stored(
    e2e: E2E, without_length: bool
) -> None:
    faults = {"file_bytes": 2 * CAP, "file_without_length": without_length}
    done = await run_hostile(e2e, faults)
    assert done["error"] == f"output 0 is larger than MAX_OUTPUT_BYTES ({CAP} bytes)"


async def test_an_ordinary_output_under_the_cap_is_still_stored(e2e: E2E) -> None:
    """The same stack, an honest model: chunked and under the cap, it is stored as before."""
    async with e2e.api() as api:
        job = await create(
            api, input={"prompt": "a fox", "_emulator": {"file_without_length": True}}
        )
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        served = await api.get(f"/v1/jobs/{job['id']}/outputs/0", follow_redirects=True)
        assert served.status_code == 200 and served.content.startswith(b"\x89PNG")
