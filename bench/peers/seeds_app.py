"""The seeds' design in one process: POST the prediction, record it, a 10 s cron, a webhook route.

    python -m bench.peers.seeds_app --port 8300 --database gen.db --replicate-url … (see --help)

What shared/seeds/000 and 001 describe, as faithfully as a Python process can:

- `POST /api/generate` creates the Replicate prediction (our webhook URL attached), then
  inserts the `generations` row with status `processing` and the prediction id (`jobId`).
  No idempotency: a retried request is a new generation.
- `POST /webhooks/replicate` (one route for every kind) verifies the signature, finds the
  row by prediction id, and if it is still `processing` downloads the outputs, writes them
  to storage and marks the row `succeeded` (or `failed`/`canceled`), all before answering.
- The cron (`/api/cron/sync-jobs`, every 10 s on Vercel) runs here as a loop: it reads every
  `processing` row and, one after the other, GETs its prediction and handles it the same way.
  A tick starts `--poll-interval` seconds after the previous one started (or at once when it
  took longer), so ticks never overlap.

Nothing guards a webhook and a cron tick handling the same row at once: both copy the outputs,
as in the seeds. SQLite stands in for the seeds' PostgreSQL (one process, one file).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.peers.peer_common import (
    TERMINAL,
    USER_ID,
    PeerConfig,
    Replicate,
    now,
    parse_config,
    store_outputs,
    verify_webhook,
)

log = logging.getLogger("seeds")

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    prediction_id TEXT UNIQUE,
    status TEXT NOT NULL,
    storage_keys TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    store_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    stored_at REAL
);
CREATE INDEX IF NOT EXISTS generations_status ON generations (status);
"""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA synchronous=normal")
    db.executescript(SCHEMA)
    return db


class Seeds:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.db = connect(config.database)
        self.replicate = Replicate(config)

    async def generate(self, key: str, job_input: dict[str, Any]) -> str:
        webhook = f"{self.config.public_url}/webhooks/replicate"
        prediction = await self.replicate.create(job_input, webhook)
        job_id = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO generations (id, key, user_id, prediction_id, status, created_at) "
            "VALUES (?, ?, ?, ?, 'processing', ?)",
            (job_id, key, USER_ID, prediction["id"], now()),
        )
        return job_id

    async def handle(self, job_id: str, prediction: dict[str, Any]) -> None:
        """A prediction seen by the webhook or the cron: store and finish it if it ended."""
        status = prediction.get("status")
        if status not in TERMINAL:
            return
        if status == "succeeded":
            keys = await store_outputs(
                self.replicate.http, self.config.storage_dir, job_id, prediction
            )
            self.db.execute(
                "UPDATE generations SET status = 'succeeded', storage_keys = ?, stored_at = ?, "
                "store_count = store_count + 1 WHERE id = ?",
                (json.dumps(keys), now(), job_id),
            )
        else:
            self.db.execute(
                "UPDATE generations SET status = ?, error = ? WHERE id = ?",
                (status, str(prediction.get("error") or status), job_id),
            )

    def processing_row(self, prediction_id: str) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT id, status FROM generations WHERE prediction_id = ?", (prediction_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    async def sync_jobs(self) -> int:
        """One cron tick: every `processing` row, one after the other. How many it read."""
        rows = self.db.execute(
            "SELECT id, prediction_id FROM generations WHERE status = 'processing'"
        ).fetchall()
        for job_id, prediction_id in rows:
            try:
                prediction = await self.replicate.get(prediction_id)
                await self.handle(job_id, prediction)
            except Exception:
                log.exception("cron: %s", job_id)
        return len(rows)

    async def cron(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sync_jobs()
            except Exception:
                log.exception("cron tick")
            await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - started)))

    async def aclose(self) -> None:
        await self.replicate.aclose()
        self.db.close()


def create_app(config: PeerConfig) -> FastAPI:
    seeds = Seeds(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cron = asyncio.create_task(seeds.cron())
        try:
            yield
        finally:
            cron.cancel()
            await asyncio.gather(cron, return_exceptions=True)
            await seeds.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/generate", status_code=202)
    async def generate(request: Request) -> dict[str, str]:
        body = await request.json()
        return {"id": await seeds.generate(str(body["key"]), dict(body["input"]))}

    @app.post("/webhooks/replicate")
    async def webhook(request: Request) -> JSONResponse:
        raw = await request.body()
        if not verify_webhook(config.webhook_secret, request.headers, raw):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        prediction = json.loads(raw)
        row = seeds.processing_row(str(prediction.get("id")))
        if row is None:
            return JSONResponse({"error": "generation not found"}, status_code=404)
        job_id, status = row
        if status == "processing":
            await seeds.handle(job_id, prediction)
        return JSONResponse({"ok": True})

    return app


def main(argv: list[str] | None = None) -> None:
    config = parse_config("python -m bench.peers.seeds_app", __doc__.split("\n", 1)[0], argv)
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
