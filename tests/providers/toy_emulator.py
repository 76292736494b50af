"""The toy provider's emulator (protocol: tests/providers/toy_provider.py), served over real HTTP
in the test's event loop: paintings move easel → brushing → framed, each framed one serves a
PNG, and its callback is sealed and delivered (again once if the receiver did not answer 2xx).
It keeps what it did, so a test can count paintings and read each delivery's answer."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Response
from PIL import Image

from devstack.processes import free_port
from tests.providers.toy_provider import DELIVERY_HEADER, SEAL_HEADER, seal


@dataclass
class Delivery:
    ref: str
    stage: str
    status_code: int | None
    answer: Any


@dataclass
class ToyEmulator:
    api_key: str
    webhook_key: str
    public_url: str = ""
    # How long a painting stays on the easel, then under the brush.
    easel_seconds: float = 0.2
    brush_seconds: float = 0.3
    paintings: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def png(self, ref: str) -> bytes:
        """The painting: a small PNG whose colour comes from its ref."""
        shade = sum(ref.encode()) % 200
        out = io.BytesIO()
        Image.new("RGB", (48, 32), (shade, 120, 255 - shade)).save(out, format="PNG")
        return out.getvalue()

    def _public(self, ref: str) -> dict[str, Any]:
        painting = self.paintings[ref]
        return {"painting": {k: v for k, v in painting.items() if k != "callback"}}

    async def _paint(self, ref: str) -> None:
        painting = self.paintings[ref]
        await asyncio.sleep(self.easel_seconds)
        if painting["stage"] != "easel":
            return
        painting["stage"] = "brushing"
        await asyncio.sleep(self.brush_seconds)
        if painting["stage"] != "brushing":
            return
        painting["stage"] = "framed"
        painting["frames"] = [f"{self.public_url}/frames/{ref}.png"]
        await self._deliver(ref)

    async def _deliver(self, ref: str) -> None:
        callback = self.paintings[ref].get("callback")
        if not callback:
            return
        body = json.dumps(self._public(ref)).encode()
        headers = {
            "Content-Type": "application/json",
            SEAL_HEADER: seal(self.webhook_key, body),
            DELIVERY_HEADER: f"{ref}-{self.paintings[ref]['stage']}",
        }
        async with httpx.AsyncClient(timeout=30.0) as http:
            for _ in range(2):
                try:
                    response = await http.post(callback, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    self.deliveries.append(Delivery(ref, "framed", None, repr(exc)))
                    continue
                answer = response.json() if response.content else None
                stage = self.paintings[ref]["stage"]
                self.deliveries.append(Delivery(ref, stage, response.status_code, answer))
                if response.is_success:
                    return
                await asyncio.sleep(0.5)

    def app(self) -> FastAPI:
        app = FastAPI()

        def check(key: str | None) -> None:
            if key != self.api_key:
                raise HTTPException(401, "wrong X-Toy-Key")

        @app.post("/paintings")
        async def create(
            body: dict[str, Any], x_toy_key: str | None = Header(None)
        ) -> dict[str, Any]:
            check(x_toy_key)
            ref = f"t-{uuid.uuid4().hex[:12]}"
            self.paintings[ref] = {
                "ref": ref,
                "stage": "easel",
                "style": body.get("style"),
                "prompt": body.get("prompt"),
                "frames": [],
                "why": None,
                "callback": body.get("callback"),
                "created": time.time(),
            }
            task = asyncio.create_task(self._paint(ref))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return self._public(ref)

        @app.get("/paintings/{ref}")
        async def read(ref: str, x_toy_key: str | None = Header(None)) -> dict[str, Any]:
            check(x_toy_key)
            if ref not in self.paintings:
                raise HTTPException(404, "no such painting")
            return self._public(ref)

        @app.delete("/paintings/{ref}")
        async def abandon(ref: str, x_toy_key: str | None = Header(None)) -> dict[str, Any]:
            check(x_toy_key)
            if ref not in self.paintings:
                raise HTTPException(404, "no such painting")
            if self.paintings[ref]["stage"] in ("easel", "brushing"):
                self.paintings[ref]["stage"] = "abandoned"
            return self._public(ref)

        @app.get("/frames/{ref}.png")
        async def frame(ref: str) -> Response:
            if self.paintings.get(ref, {}).get("stage") != "framed":
                raise HTTPException(404, "no such frame")
            return Response(self.png(ref), media_type="image/png")

        return app


@asynccontextmanager
async def serving(emulator: ToyEmulator) -> AsyncIterator[str]:
    """The emulator under uvicorn in this event loop, on a free port; yields its base URL."""
    port = free_port()
    emulator.public_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            emulator.app(), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert not task.done(), "the toy emulator exited while starting"
            assert time.monotonic() < deadline, "the toy emulator did not start"
            await asyncio.sleep(0.02)
        yield emulator.public_url
    finally:
        server.should_exit = True
        await task
        for pending in list(emulator._tasks):
            pending.cancel()
