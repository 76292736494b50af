"""Proof that a provider is one module: the toy provider, declared in tests/ only
(tests/providers/toy_provider.py) and loaded by PROVIDER_MODULES, runs jobs end to end through
the real API, webhook bridge, workflow and storage, its own emulator speaking its own protocol
over HTTP. No file outside tests/ names it.

Its own stack (devstack, as the e2e harness starts one): no built-in emulator, the toy's
settings in the environment, and a poll interval longer than any test here, so a job can only
finish because its callback came through the bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.tokens import webhook_token
from devstack.stack import Stack, StackConfig
from tests.e2e.conftest import ARTIFACTS, wait_for_status
from tests.providers.toy_emulator import ToyEmulator, serving
from tests.providers.toy_provider import SEAL_HEADER, seal

pytestmark = pytest.mark.e2e

KEY = "toy-alice-key"
TOY_KEY = "toy-account-key"
TOY_WEBHOOK_KEY = "toy-webhook-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Toy:
    stack: Stack
    emulator: ToyEmulator

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30.0
        )

    def painting_of(self, job_id: str) -> dict[str, object]:
        """The one painting the toy made for this job (its callback URL names the job)."""
        made = [
            p
            for p in self.emulator.paintings.values()
            if parse_qs(urlsplit(str(p["callback"])).query).get("job_id") == [job_id]
        ]
        assert len(made) == 1, made
        return made[0]


@pytest.fixture(scope="module")
async def toy() -> AsyncIterator[Toy]:
    emulator = ToyEmulator(api_key=TOY_KEY, webhook_key=TOY_WEBHOOK_KEY)
    tmp = Path(tempfile.mkdtemp(prefix="autosync-toy-"))
    async with serving(emulator) as url:
        config = StackConfig.ephemeral(
            tmp,
            provider_ports={},  # no built-in emulator: this stack only needs the toy
            erp_port=None,
            worker_metrics_port=None,
            api_keys=f"{KEY}=alice",
            log_dir=ARTIFACTS / "e2e-logs" / "toy",
            env={
                "PROVIDER_MODULES": "tests.providers.toy_provider",
                "TOY_BASE_URL": url,
                "TOY_API_KEY": TOY_KEY,
                "TOY_WEBHOOK_KEY": TOY_WEBHOOK_KEY,
                "OUTBOUND_ALLOWED_ORIGINS": url,  # its frames are served on loopback
                "POLL_INTERVAL_SECONDS": "3600",
                "API_RATE_LIMIT_PER_SECOND": "0",
            },
        )
        stack = Stack(config)
        try:
            # In a thread: the emulator serves in this event loop while the stack starts.
            await asyncio.to_thread(stack.start)
            yield Toy(stack, emulator)
        finally:
            await asyncio.to_thread(stack.stop)
            shutil.rmtree(tmp, ignore_errors=True)


def test_no_file_outside_tests_names_the_toy() -> None:
    tracked = [
        path
        for top in ("api", "core", "activities", "workflows", "providers", "devstack", "storage")
        for path in (ROOT / top).rglob("*.py")
    ] + [ROOT / "worker.py", ROOT / ".env.example", ROOT / "docker-compose.yml"]
    named = [str(p.relative_to(ROOT)) for p in tracked if "toy" in p.read_text().lower()]
    assert named == []


async def test_a_job_at_the_toy_runs_end_to_end_through_its_callback(toy: Toy) -> None:
    async with toy.api() as api:
        me = (await api.get("/v1/me")).json()
        assert "toy" in me["providers"]
        created = await api.post(
            "/v1/jobs", json={"kind": "generation", "provider": "toy", "input": {"prompt": "a fox"}}
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["model"] == "toy/watercolour"  # the spec's default for the kind
        done = await wait_for_status(api, f"/v1/jobs/{job['id']}", {"succeeded", "failed"}, 60)
        assert done["status"] == "succeeded", done
        painting = toy.painting_of(job["id"])
        assert done["provider_job_id"] == painting["ref"]
        assert (done["provider_status"], done["provider_phase"]) == ("framed", "succeeded")
        # Finished by its callback, handed over by the bridge, not by a poll.
        assert done["poll_count"] == 0 and done["webhook_count"] >= 1
        answers = [d for d in toy.emulator.deliveries if d.ref == painting["ref"]]
        assert [(d.status_code, d.answer) for d in answers] == [(200, {"status": "accepted"})]
        # The painting, copied to storage: the same bytes, served by the API.
        [output] = done["outputs"]
        assert output["content_type"] == "image/png" and output["thumbnail_url"]
        expected = toy.emulator.png(str(painting["ref"]))
        assert output["sha256"] == hashlib.sha256(expected).hexdigest()
        stored = await api.get(f"/v1/jobs/{job['id']}/outputs/0", follow_redirects=True)
        assert stored.status_code == 200 and stored.content == expected


async def test_the_toys_own_checks_and_seal_guard_its_jobs(toy: Toy) -> None:
    async with toy.api() as api:
        edit = {"kind": "edit", "provider": "toy", "input": {"prompt": "blue", "image": "u"}}
        refused = await api.post("/v1/jobs", json=edit)
        assert refused.status_code == 422 and "the toy only paints" in refused.text
        bad_model = {"kind": "generation", "provider": "toy", "model": "oil/x", "input": {}}
        refused = await api.post("/v1/jobs", json={**bad_model, "input": {"prompt": "x"}})
        assert refused.status_code == 422 and "toy/watercolour" in refused.text

        toy.emulator.easel_seconds = 3600  # the next painting waits on the easel
        try:
            created = await api.post(
                "/v1/jobs", json={"kind": "generation", "provider": "toy", "input": {"prompt": "x"}}
            )
            job = created.json()
            await wait_for_status(api, f"/v1/jobs/{job['id']}", {"submitted"}, 60)
        finally:
            toy.emulator.easel_seconds = 0.2
        ref = str(toy.painting_of(job["id"])["ref"])
        # A forged callback claiming the painting is framed: the toy's verifier refuses it.
        body = json.dumps({"painting": {"ref": ref, "stage": "framed", "frames": []}}).encode()
        token = webhook_token(toy.stack.secret_key().encode(), job["id"])
        hook = f"/webhooks/toy?job_id={job['id']}&token={token}"
        forged = await api.post(hook, content=body, headers={SEAL_HEADER: seal("wrong", body)})
        assert forged.status_code == 401
        # Cancel reaches the toy (its DELETE) and the phase is recorded.
        cancel = await api.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "changed my mind"})
        assert cancel.status_code == 202
        done = await wait_for_status(api, f"/v1/jobs/{job['id']}", {"canceled", "failed"}, 60)
        assert done["status"] == "canceled"
        assert (done["provider_status"], done["provider_phase"]) == ("abandoned", "canceled")
        assert toy.emulator.paintings[ref]["stage"] == "abandoned"
