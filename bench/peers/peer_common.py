"""What both peers share: their command line, Replicate calls, webhook checks, output copies.

Written as the seeds' TypeScript was (shared/seeds/000 and 001): a Replicate client, a
webhook verified with the account's signing secret, outputs downloaded and written to
`generated/{user_id}/{job_id}_{n}.{ext}`. No autosync code is used: the peers must stand on
their own, as an outside implementation would.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

MODEL = "black-forest-labs/flux-schnell"
USER_ID = "bench"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
# The peers ask for the terminal webhook only, as autosync does in the bench.
WEBHOOK_EVENTS = ["completed"]
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


@dataclass(frozen=True)
class PeerConfig:
    host: str
    port: int
    replicate_url: str
    replicate_token: str
    webhook_secret: str
    storage_dir: Path
    poll_interval: float
    database: str  # a SQLite path (seeds) or a postgresql:// URL (DBOS)

    @property
    def public_url(self) -> str:
        """Where the provider sends webhooks: this process, on loopback."""
        return f"http://{self.host}:{self.port}"


def parse_config(prog: str, description: str, argv: list[str] | None = None) -> PeerConfig:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicate-url", required=True)
    parser.add_argument("--replicate-token", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--storage-dir", type=Path, required=True)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    return PeerConfig(
        host=args.host,
        port=args.port,
        replicate_url=args.replicate_url.rstrip("/"),
        replicate_token=args.replicate_token,
        webhook_secret=args.webhook_secret,
        storage_dir=args.storage_dir,
        poll_interval=args.poll_interval,
        database=args.database,
    )


class Replicate:
    """The three calls a media job needs: create a prediction, read it, download its files."""

    def __init__(self, config: PeerConfig) -> None:
        self._base = config.replicate_url
        self._headers = {"Authorization": f"Bearer {config.replicate_token}"}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0),
            # Below the server's keep-alive (uvicorn's 5 s, like the emulator's), so a pooled
            # connection is never reused just as the server closes it.
            limits=httpx.Limits(max_connections=100, keepalive_expiry=2.0),
            trust_env=False,
        )

    async def create(self, job_input: Mapping[str, Any], webhook: str) -> dict[str, Any]:
        body = {"input": dict(job_input), "webhook": webhook,
                "webhook_events_filter": WEBHOOK_EVENTS}  # fmt: skip
        owner, name = MODEL.split("/")
        url = f"{self._base}/v1/models/{owner}/{name}/predictions"
        response = await self.http.post(url, json=body, headers=self._headers)
        response.raise_for_status()
        prediction: dict[str, Any] = response.json()
        return prediction

    async def get(self, prediction_id: str) -> dict[str, Any]:
        url = f"{self._base}/v1/predictions/{prediction_id}"
        response = await self.http.get(url, headers=self._headers)
        response.raise_for_status()
        prediction: dict[str, Any] = response.json()
        return prediction

    async def aclose(self) -> None:
        await self.http.aclose()


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the Standard Webhooks signature of a webhook is the account's."""
    try:
        Webhook(secret).verify(body, dict(headers))
    except WebhookVerificationError:
        return False
    return True


def output_urls(prediction: Mapping[str, Any]) -> list[str]:
    output = prediction.get("output")
    items = output if isinstance(output, list) else [output]
    return [u for u in items if isinstance(u, str) and u.startswith(("http://", "https://"))]


async def store_outputs(
    http: httpx.AsyncClient, storage_dir: Path, job_id: str, prediction: Mapping[str, Any]
) -> list[str]:
    """Download every output and write it under `generated/{user}/{job}_{n}.{ext}`; the keys."""
    keys: list[str] = []
    for n, url in enumerate(output_urls(prediction)):
        response = await http.get(url)
        response.raise_for_status()
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        ext = EXTENSIONS.get(content_type) or url.rsplit(".", 1)[-1][:5] or "bin"
        key = f"generated/{USER_ID}/{job_id}_{n}.{ext}"
        await asyncio.to_thread(_write, storage_dir / key, response.content)
        keys.append(key)
    return keys


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def now() -> float:
    return time.time()
