"""One trace from the REST call to the provider: the API (its own HTTP server span), the
Temporal dev server, a worker and the Replicate emulator in this process, spans kept in memory.

POST /v1/jobs, wait for the job, then every span of the request (the HTTP server span, the
workflow start, the workflow run, the submit activity and the emulator call it makes) must
share the request's trace id, each a descendant of the HTTP server span.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.contracts import SEARCH_ATTRIBUTES
from core.migrate import upgrade
from core.settings import Settings
from core.tracing import setup_tracing, shutdown_tracing, temporal_interceptors
from devstack.processes import free_port, temporal_cli_path
from emulators.replicate.app import create_app as create_emulator
from emulators.replicate.config import EmulatorConfig
from providers.replicate import EMULATOR_TOKEN, EMULATOR_WEBHOOK_SECRET, ReplicateSettings
from worker import build_workers

KEY = "alice-key"


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` under uvicorn in this event loop, on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert not task.done(), "server exited while starting"
            assert time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    setup_tracing("autosync-test", exporter=exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


@pytest.fixture
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(  # dev_server_existing_path: the wheel's CLI
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_one_trace_from_the_rest_call_to_the_provider_call(
    spans: InMemorySpanExporter, temporal: WorkflowEnvironment, tmp_path: Path
) -> None:
    emulator = create_emulator(
        EmulatorConfig(
            api_token=EMULATOR_TOKEN,
            webhook_secret=EMULATOR_WEBHOOK_SECRET,
            starting_seconds=0.1,
            processing_seconds=0.2,
            webhook_retry_delays=[0.2],
        )
    )
    target = temporal.client.service_client.config.target_host
    async with serving(emulator) as emulator_url:
        # The emulator serves its output files at its own URL.
        emulator.state.emulator.config.public_url = emulator_url
        url = f"sqlite:///{tmp_path / 'app.db'}"
        upgrade(url)
        api_port = free_port()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            secret_key="test-secret-key-0123456789",
            bootstrap_api_keys=f"{KEY}=alice",
            temporal_address=target,
            media_task_queue=f"trace-{uuid.uuid4().hex[:8]}",
            storage_task_queue=f"trace-storage-{uuid.uuid4().hex[:8]}",
            worker_queues=["media", "storage"],
            storage_dir=str(tmp_path / "storage"),
            public_base_url=f"http://127.0.0.1:{api_port}",
            outbound_allowed_origins=[emulator_url],
            poll_interval_seconds=0.5,
            provider_pollers=False,  # each job polls on its own: no poller workflow here
            api_rate_limit_per_second=0,
        ).using(
            ReplicateSettings(
                _env_file=None,  # type: ignore[call-arg]
                api_token=EMULATOR_TOKEN,
                base_url=emulator_url,
                webhook_secret=EMULATOR_WEBHOOK_SECRET,
            )
        )
        client = await Client.connect(target, interceptors=temporal_interceptors())
        app = create_app(settings)
        async with build_workers(settings, client) as workers, AsyncExitStack() as running:
            for worker in workers:  # the job's workflow and activities, the copy, the pollers
                await running.enter_async_context(worker)
            async with serving(app) as api_url:
                async with httpx.AsyncClient(
                    base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
                ) as api:
                    created = await api.post(
                        "/v1/jobs",
                        json={"kind": "generation", "provider": "replicate",
                              "input": {"prompt": "a fox"}},
                    )  # fmt: skip
                    assert created.status_code in (200, 201, 202), created.text
                    job_id = created.json()["id"]
                    body = await wait_finished(api, job_id)
                    assert body["status"] == "succeeded", body

    finished = spans.get_finished_spans()
    [post] = [s for s in finished if s.name == "POST /v1/jobs"]
    assert post.kind == SpanKind.SERVER
    trace_id = post.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert "StartWorkflow:MediaJobWorkflow" in names, names
    assert "RunWorkflow:MediaJobWorkflow" in names, names
    assert "RunActivity:media.submit" in names, names
    # The submit's call to the provider: a client span, child of the submit activity's span.
    [submit] = [s for s in in_trace if s.name == "RunActivity:media.submit"]
    provider_calls = [
        s for s in in_trace
        if s.kind == SpanKind.CLIENT and s.attributes is not None
        and str(s.attributes.get("url.full", "")).startswith(emulator_url)
    ]  # fmt: skip
    assert any(s.parent and s.parent.span_id == submit.context.span_id for s in provider_calls)
    # Every span of the trace descends from the HTTP server span.
    by_id = {s.context.span_id: s for s in in_trace}
    for span in in_trace:
        assert reaches(span, post, by_id), f"{span.name} is not under {post.name}"


def reaches(span: ReadableSpan, root: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    current: ReadableSpan | None = span
    while current is not None:
        if current.context.span_id == root.context.span_id:
            return True
        parent = current.parent
        current = by_id.get(parent.span_id) if parent is not None else None
    return False


async def wait_finished(api: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60  # a deadline, not a timing assertion
    while True:
        response = await api.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        assert time.monotonic() < deadline, f"job never finished: {body}"
        await asyncio.sleep(0.1)
