"""A TCP front for several API processes: what a load balancer is in a deployment.

Providers call one public URL (PUBLIC_BASE_URL); behind it, any live API process may answer.
Each connection goes to the next backend in turn; a backend that refuses the connection (killed,
restarting) is skipped for the next one. It runs on its own thread and event loop, so a busy
bench loop never delays a webhook.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence


class TcpFront:
    def __init__(self, port: int, backends: Sequence[int], host: str = "127.0.0.1") -> None:
        self.port = port
        self._host = host
        self._backends = list(backends)
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tcp-front", daemon=True)
        self.connections = 0
        self.skipped = 0  # connections a dead backend refused, sent to the next one
        self._open: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> TcpFront:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the TCP front did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._accept, self._host, self.port)
        self._ready.set()
        async with server:
            await self._stopped.wait()
        # Pipes still open end here, not when the loop closes under them ("Event loop is
        # closed" from every kept-alive connection at the bench's exit).
        for task in self._open:
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        first = next(self._turn)
        for i in range(len(self._backends)):
            port = self._backends[(first + i) % len(self._backends)]
            try:
                return await asyncio.open_connection(self._host, port)
            except OSError:
                self.skipped += 1
        raise ConnectionRefusedError("no API process is up")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        try:
            try:
                up_reader, up_writer = await self._connect()
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass
