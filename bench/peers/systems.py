"""The three systems of the peers bench behind one interface: start, submit, read, kill, restart.

Each gets its own Replicate emulator (`python -m emulators.replicate`, same settings as the
autosync stack's), so the emulator's counters are the system's own. What survives a kill is
each design's durable store, which keeps running: autosync's Temporal server (and its SQLite
app DB), the seeds' SQLite file, DBOS's PostgreSQL. What is killed is the design's own
process(es): autosync's API and worker, the seeds' process, the DBOS process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from abc import ABC, abstractmethod
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.app_client import unix_time
from bench.common import UNTHROTTLED_ENV
from bench.peers.workload import JobSpec, key_of
from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, Stack, StackConfig
from providers.registry import specs
from providers.replicate import EMULATOR_TOKEN, EMULATOR_WEBHOOK_SECRET

API_KEY = "bench-key"
REPLICATE = "replicate"
# The emulator's defaults for the jobs of the mix (each job sets its own processing time).
EMULATOR_ENV = {
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.3",
}
STORED = "succeeded"
KEEPALIVE_SECONDS = 2.0
TERMINAL = ("succeeded", "failed", "canceled")


@dataclass
class Row:
    """One job of a system's read model, as the bench compares them."""

    key: str
    job_id: str
    status: str  # `succeeded`: its outputs are stored
    prediction_id: str | None
    stored_at: float | None  # unix seconds
    files: int
    store_count: int | None = None  # times the outputs were written (None: not recorded)


class SubmitRefused(Exception):
    """The system answered a submit with an error status."""


def start_emulator(data_dir: Path, log_dir: Path) -> tuple[ManagedProcess, str]:
    """A Replicate emulator of the system's own, through its command line."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The settings devstack gives the autosync stack's emulator (keys, state file), and ours.
    env = {**specs()[REPLICATE].emulator_env(url, data_dir), **EMULATOR_ENV}
    args = [sys.executable, "-m", "emulators.replicate", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    proc = ManagedProcess("emulator", args, log_dir=log_dir, env=env, cwd=ROOT).start()
    proc.wait_http(f"{url}/_emulator/health")
    return proc, url


class System(ABC):
    name: str
    # What a kill ends (names of `pids()`); the rest keeps running.
    killed: tuple[str, ...]
    emulator_url: str

    def __init__(self, data_dir: Path, poll_interval: float) -> None:
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.poll_interval = poll_interval
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            # Below uvicorn's 5 s keep-alive: a pooled connection the server is closing at
            # the moment it is reused fails the request before the server reads it.
            limits=httpx.Limits(max_connections=100, keepalive_expiry=KEEPALIVE_SECONDS),
            trust_env=False,
        )

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def pids(self) -> dict[str, int]:
        """The system's processes (their trees count), by name; the emulator apart."""

    @abstractmethod
    def emulator_pid(self) -> int: ...

    @abstractmethod
    async def kill(self) -> None:
        """SIGKILL the processes named in `killed`."""

    @abstractmethod
    async def restart(self) -> None:
        """Start the killed processes again; returns once they serve."""

    @abstractmethod
    async def submit(self, job: JobSpec) -> str:
        """Submit one job; its id. Raises httpx.HTTPError or SubmitRefused."""

    @abstractmethod
    async def rows(self, label: str) -> list[Row]:
        """The jobs of the read model whose key starts with `label-`."""

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    async def aclose(self) -> None:
        await self.http.aclose()


def _refused(response: httpx.Response) -> SubmitRefused:
    return SubmitRefused(f"HTTP {response.status_code}: {response.text[:300]}")


# --- autosync ----------------------------------------------------------------------------------


class Autosync(System):
    """The whole stack as devstack starts it: Temporal dev server, emulator, API, worker."""

    name = "autosync"
    killed = ("api", "worker")

    def __init__(self, data_dir: Path, poll_interval: float) -> None:
        super().__init__(data_dir, poll_interval)
        env = {**EMULATOR_ENV, **UNTHROTTLED_ENV, "POLL_INTERVAL_SECONDS": str(poll_interval),
               "REPLICATE_WEBHOOK_EVENTS": "completed"}  # fmt: skip
        # Replicate's emulator only: the other providers' and the ERP's would idle alongside.
        config = StackConfig.ephemeral(
            data_dir, api_keys=f"{API_KEY}=bench", env=env,
            provider_ports={REPLICATE: free_port()}, erp_port=None,
        )  # fmt: skip
        self.stack = Stack(config)
        url = self.stack.provider_url(REPLICATE)
        assert url is not None
        self.emulator_url = url
        self._projects: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self.stack.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stack.stop)

    def pids(self) -> dict[str, int]:
        procs = {"temporal": self.stack.temporal, "api": self.stack.api,
                 "worker": self.stack.worker}  # fmt: skip
        return {name: proc.pid for name, proc in procs.items() if proc is not None}

    def emulator_pid(self) -> int:
        return self.stack.emulators[REPLICATE].pid

    async def kill(self) -> None:
        assert self.stack.api is not None
        self.stack.api.kill()
        self.stack.kill_worker()

    async def restart(self) -> None:
        await asyncio.to_thread(self.stack.start_api)
        await asyncio.to_thread(self.stack.start_worker)

    async def _project(self, label: str) -> str:
        async with self._lock:
            if label not in self._projects:
                response = await self.http.post(
                    f"{self.stack.api_url}/v1/projects",
                    json={"name": f"peers {label}"},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                response.raise_for_status()
                self._projects[label] = str(response.json()["id"])
            return self._projects[label]

    async def submit(self, job: JobSpec) -> str:
        label = job.key.rsplit("-", 1)[0]
        body = {"kind": "generation", "input": job.input(),
                "project_id": await self._project(label)}  # fmt: skip
        headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": job.key}
        response = await self.http.post(f"{self.stack.api_url}/v1/jobs", json=body,
                                        headers=headers)  # fmt: skip
        if response.status_code != 202:
            raise _refused(response)
        return str(response.json()["id"])

    def _query(self, project_id: str) -> list[tuple[Any, ...]]:
        path = self.stack.database_url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(
                "SELECT id, status, provider_job_id, completed_at, input, storage_keys "
                "FROM jobs WHERE project_id = ?",
                (project_id,),
            ).fetchall()

    async def rows(self, label: str) -> list[Row]:
        project_id = self._projects.get(label)
        if project_id is None:
            return []
        out: list[Row] = []
        for job_id, status, pid, completed_at, job_input, keys in await asyncio.to_thread(
            self._query, project_id
        ):
            key = key_of(json.loads(job_input or "{}").get("prompt"))
            stored = status == STORED
            out.append(Row(
                key=key or "", job_id=job_id, status=status, prediction_id=pid,
                stored_at=unix_time(completed_at) if stored else None,
                files=len(json.loads(keys or "[]")),
            ))  # fmt: skip
        return out


# --- the peers -----------------------------------------------------------------------------------


class Peer(System):
    """One peer process (`python -m bench.peers.<module>`) and its emulator."""

    module: str

    def __init__(self, data_dir: Path, poll_interval: float) -> None:
        super().__init__(data_dir, poll_interval)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage_dir = data_dir / "storage"
        self.emulator: ManagedProcess | None = None
        self.proc: ManagedProcess | None = None
        self._generation = 0

    @abstractmethod
    def database(self) -> str: ...

    def _args(self) -> list[str]:
        return [
            sys.executable, "-m", f"bench.peers.{self.module}",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--replicate-url", self.emulator_url,
            "--replicate-token", EMULATOR_TOKEN,
            "--webhook-secret", EMULATOR_WEBHOOK_SECRET,
            "--storage-dir", str(self.storage_dir),
            "--poll-interval", str(self.poll_interval),
            "--database", self.database(),
        ]  # fmt: skip

    def _start_peer(self) -> None:
        self._generation += 1
        self.proc = ManagedProcess(
            f"{self.name}-{self._generation}", self._args(), log_dir=self.log_dir, cwd=ROOT
        ).start()
        self.proc.wait_http(f"{self.url}/health", timeout=120)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.emulator, self.emulator_url = await asyncio.to_thread(
            start_emulator, self.data_dir, self.log_dir
        )
        await asyncio.to_thread(self._start_peer)

    async def stop(self) -> None:
        for proc in (self.proc, self.emulator):
            if proc is not None:
                await asyncio.to_thread(proc.stop)

    def pids(self) -> dict[str, int]:
        assert self.proc is not None
        return {"app": self.proc.pid}

    def emulator_pid(self) -> int:
        assert self.emulator is not None
        return self.emulator.pid

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    async def restart(self) -> None:
        await asyncio.to_thread(self._start_peer)

    async def submit(self, job: JobSpec) -> str:
        response = await self.http.post(
            f"{self.url}/api/generate",
            json={"key": job.key, "input": job.input()},
            headers={"Idempotency-Key": job.key},
        )
        if response.status_code != 202:
            raise _refused(response)
        return str(response.json()["id"])


class Seeds(Peer):
    name = "seeds"
    module = "seeds_app"
    killed = ("app",)

    def database(self) -> str:
        return str(self.data_dir / "generations.db")

    def _query(self, label: str) -> list[tuple[Any, ...]]:
        path = self.database()
        if not Path(path).exists():
            return []
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(
                "SELECT key, id, status, prediction_id, stored_at, storage_keys, store_count "
                "FROM generations WHERE key LIKE ?",
                (f"{label}-%",),
            ).fetchall()

    async def rows(self, label: str) -> list[Row]:
        return [_peer_row(row) for row in await asyncio.to_thread(self._query, label)]


class Dbos(Peer):
    name = "dbos"
    module = "dbos_app"
    killed = ("app",)

    def __init__(
        self, data_dir: Path, poll_interval: float, postgres: PostgresServer | None = None
    ) -> None:
        """`postgres`: a running server to use (and leave running); default: a cluster of
        its own, started and stopped with the system."""
        super().__init__(data_dir, poll_interval)
        self._own_postgres = postgres is None
        self.postgres = postgres or PostgresServer(log_dir=self.log_dir)
        self._database: str | None = None

    def database(self) -> str:
        assert self._database is not None
        return self._database

    async def start(self) -> None:
        if self._own_postgres:
            await asyncio.to_thread(self.postgres.start)
        self._database = await asyncio.to_thread(self.postgres.create_database)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._own_postgres:
            await asyncio.to_thread(self.postgres.stop)

    def pids(self) -> dict[str, int]:
        pids = super().pids()
        if self.postgres.pid is not None:
            pids["postgres"] = self.postgres.pid
        return pids

    def _query(self, label: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database(), connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('public.peer_jobs')").fetchone()
            if exists is None or exists[0] is None:
                return []
            return conn.execute(
                "SELECT key, id, status, prediction_id, stored_at, storage_keys, store_count "
                "FROM peer_jobs WHERE key LIKE %s",
                (f"{label}-%",),
            ).fetchall()

    async def rows(self, label: str) -> list[Row]:
        return [_peer_row(row) for row in await asyncio.to_thread(self._query, label)]


def _peer_row(row: tuple[Any, ...]) -> Row:
    key, job_id, status, pid, stored_at, keys, store_count = row
    return Row(key=key, job_id=job_id, status=status, prediction_id=pid,
               stored_at=float(stored_at) if stored_at is not None else None,
               files=len(json.loads(keys or "[]")), store_count=int(store_count))  # fmt: skip


SYSTEMS: dict[str, type[System]] = {"autosync": Autosync, "seeds": Seeds, "dbos": Dbos}
