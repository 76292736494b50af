"""The whole stack stopped and started again (what Ctrl-C and a new `make up` do): jobs that
were in flight carry on and finish once."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack, StackConfig
from tests.e2e.conftest import ARTIFACTS, E2E_ENV
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e


async def test_jobs_in_flight_carry_on_after_a_full_restart() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="autosync-restart-"))
    config = StackConfig.ephemeral(
        tmp,
        api_keys="alice-key=alice",
        env={**E2E_ENV, "POLL_INTERVAL_SECONDS": "1"},
        log_dir=ARTIFACTS / "e2e-logs" / "restart",
    )
    stack = Stack(config)
    headers = {"Authorization": "Bearer alice-key"}
    try:
        stack.start()
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as api:
            slow = await create(api, input={"prompt": "a", "_emulator": {"processing_seconds": 8}})
            quick = await create(api, input={"prompt": "b", "_emulator": {"processing_seconds": 1}})
            await wait_job(api, slow["id"], {"submitted", "processing"})
            await wait_job(api, quick["id"], {"submitted", "processing"})
        stack.stop()  # `quick` finishes at the provider while everything is down
        stack.start()
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as api:
            for job in (slow, quick):
                done = await wait_job(api, job["id"], within=60)
                assert done["status"] == "succeeded", done
                assert len(done["outputs"]) == 1
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
