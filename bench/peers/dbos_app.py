"""The media job as a DBOS Transact workflow on PostgreSQL, in one process with its HTTP API.

    python -m bench.peers.dbos_app --port 8400 --database postgresql://… --replicate-url … (--help)

- `POST /api/generate` starts workflow `job-{key}` (the client's key is the workflow id, so a
  retried request finds the same workflow: DBOS's own idempotency).
- `media_job`: step `create_prediction` (our webhook URL carries `?job_id=`), step `record`
  (the `peer_jobs` row, `processing`), then `DBOS.recv_async("provider_event", timeout=poll
  interval)` in a loop: a webhook's message wakes it at once; each timeout runs step `poll`
  (GET the prediction) — the durable poll fallback. On `succeeded`, step `store` copies the
  outputs and marks the row `succeeded`; other terminal states mark it so.
- `POST /webhooks/replicate?job_id=` verifies the signature and `DBOS.send_async`s the body to
  the job's workflow (the `webhook-id` as idempotency key: duplicates are one message).

Steps are at-least-once: a process killed while a step runs runs it again when `DBOS.launch()`
recovers the workflow. For `create_prediction` that means a second prediction at Replicate;
the bench counts what it costs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import uvicorn
from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos import error as dbos_error
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.peers.peer_common import (
    TERMINAL,
    PeerConfig,
    Replicate,
    now,
    parse_config,
    store_outputs,
    verify_webhook,
)

TOPIC = "provider_event"
APP_NAME = "autosync-peers-dbos"
SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_jobs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    prediction_id TEXT,
    status TEXT NOT NULL,
    storage_keys TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    store_count INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    stored_at DOUBLE PRECISION
)
"""


def workflow_id(key: str) -> str:
    return f"job-{key}"


@dataclass
class Runtime:
    config: PeerConfig
    replicate: Replicate
    engine: AsyncEngine


_runtime: Runtime | None = None


def runtime() -> Runtime:
    assert _runtime is not None, "the app's lifespan sets the runtime up before any workflow"
    return _runtime


def async_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


# --- steps and the workflow ----------------------------------------------------------------


@DBOS.step(retries_allowed=True, max_attempts=3)
async def create_prediction(job_id: str, job_input: dict[str, Any]) -> dict[str, Any]:
    rt = runtime()
    webhook = f"{rt.config.public_url}/webhooks/replicate?job_id={job_id}"
    return await rt.replicate.create(job_input, webhook)


@DBOS.step(retries_allowed=True, max_attempts=5)
async def record(job_id: str, key: str, prediction_id: str) -> None:
    async with runtime().engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO peer_jobs (id, key, prediction_id, status, created_at) "
                "VALUES (:id, :key, :pid, 'processing', :at) ON CONFLICT (id) DO NOTHING"
            ),
            {"id": job_id, "key": key, "pid": prediction_id, "at": now()},
        )


@DBOS.step(retries_allowed=True, max_attempts=5)
async def poll(prediction_id: str) -> dict[str, Any]:
    return await runtime().replicate.get(prediction_id)


@DBOS.step(retries_allowed=True, max_attempts=5)
async def store(job_id: str, prediction: dict[str, Any]) -> list[str]:
    rt = runtime()
    keys = await store_outputs(rt.replicate.http, rt.config.storage_dir, job_id, prediction)
    async with rt.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE peer_jobs SET status = 'succeeded', storage_keys = :keys, "
                "stored_at = :at, store_count = store_count + 1 WHERE id = :id"
            ),
            {"keys": json.dumps(keys), "at": now(), "id": job_id},
        )
    return keys


@DBOS.step(retries_allowed=True, max_attempts=5)
async def finish(job_id: str, status: str, error: str) -> None:
    async with runtime().engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE peer_jobs SET status = :status, error = :error WHERE id = :id"),
            {"status": status, "error": error, "id": job_id},
        )


@DBOS.workflow()
async def media_job(job_id: str, key: str, job_input: dict[str, Any]) -> str:
    prediction = await create_prediction(job_id, job_input)
    prediction_id = str(prediction["id"])
    await record(job_id, key, prediction_id)
    poll_interval = runtime().config.poll_interval
    while prediction.get("status") not in TERMINAL:
        event = await DBOS.recv_async(TOPIC, timeout_seconds=poll_interval)
        if isinstance(event, dict) and event.get("id") == prediction_id:
            prediction = event
        else:
            prediction = await poll(prediction_id)
    status = str(prediction["status"])
    if status == "succeeded":
        await store(job_id, prediction)
    else:
        await finish(job_id, status, str(prediction.get("error") or status))
    return status


# --- the HTTP API --------------------------------------------------------------------------


def create_app(config: PeerConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        global _runtime
        engine = create_async_engine(async_url(config.database), pool_size=10, max_overflow=20)
        async with engine.begin() as conn:
            await conn.execute(sa.text(SCHEMA))
        _runtime = Runtime(config, Replicate(config), engine)
        dbos_config: DBOSConfig = {
            "name": APP_NAME,
            "system_database_url": config.database,
            "log_level": "WARNING",
        }
        DBOS(config=dbos_config)
        # Recovers this executor's unfinished workflows (after a crash) before serving.
        DBOS.launch()
        try:
            yield
        finally:
            DBOS.destroy()
            await _runtime.replicate.aclose()
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/generate", status_code=202)
    async def generate(request: Request) -> dict[str, str]:
        body = await request.json()
        key = str(body["key"])
        job_id = workflow_id(key)
        with SetWorkflowID(job_id):
            await DBOS.start_workflow_async(media_job, job_id, key, dict(body["input"]))
        return {"id": job_id}

    @app.post("/webhooks/replicate")
    async def webhook(request: Request, job_id: str) -> JSONResponse:
        raw = await request.body()
        if not verify_webhook(config.webhook_secret, request.headers, raw):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            await DBOS.send_async(
                job_id,
                json.loads(raw),
                TOPIC,
                idempotency_key=request.headers.get("webhook-id"),
            )
        except dbos_error.DBOSNonExistentWorkflowError:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse({"ok": True})

    return app


def main(argv: list[str] | None = None) -> None:
    config = parse_config("python -m bench.peers.dbos_app", __doc__.split("\n", 1)[0], argv)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
