"""The whole stack as child processes: Temporal dev server, provider emulators, API, worker.

One way to start it, used by `make up` (fixed, documented ports), by the end-to-end tests and by
the benches (free ports, temp dirs). Every process is stopped by its PID. The provider emulators
are the ones the provider specs declare (`providers.spec.EmulatorSpec`): nothing here names one.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.contracts import SEARCH_ATTRIBUTES
from core.migrate import upgrade
from core.settings import Settings
from devstack.processes import ManagedProcess, free_port, temporal_cli_path
from providers import registry
from providers.spec import ProviderSpec

ROOT = Path(__file__).resolve().parent.parent

# Tuning measured in shared/reference/dev-server-limits.md: WAL journal (+30-45 % throughput),
# faster transfer/timer processors (signal round trip ~25 ms instead of ~100 ms) and room for
# more than 1200 concurrent long polls.
DEV_SERVER_TUNING = [
    "--sqlite-pragma", "journal_mode=wal",
    "--sqlite-pragma", "synchronous=normal",
    "--dynamic-config-value", "history.transferProcessorMaxPollRPS=200",
    "--dynamic-config-value", "history.timerProcessorMaxPollRPS=200",
    "--dynamic-config-value", "frontend.namespaceCount=5000",
    # An activity scheduled by a workflow task goes straight back to the worker that
    # completed it, saving a task-queue round trip per activity.
    "--dynamic-config-value", "system.enableActivityEagerExecution=true",
    # One partition per task queue: a task queue's activities-per-second limit is split
    # among its partitions, and tasks spread unevenly over four lose a share of the budget.
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
    # Task queue priority and fairness (core/jobs/start.task_priority): a user's flood of new
    # jobs takes turns with other users' jobs in the media queue instead of going first.
    "--dynamic-config-value", "matching.useNewMatcher=true",
    "--dynamic-config-value", "matching.enableFairness=true",
]  # fmt: skip

WORKER_READY = "worker polling task queue"
# Companies of the ERP emulator and their tokens (the same map on both sides).
ERP_COMPANY_TOKENS = {"acme": "erp-dev-token", "globex": "erp-globex-token"}


def provider_emulators() -> dict[str, ProviderSpec[Any]]:
    """Every provider that has an emulator, by name."""
    return {name: spec for name, spec in registry.specs().items() if spec.emulator}


def default_provider_ports() -> dict[str, int | None]:
    return {
        name: spec.emulator.port for name, spec in provider_emulators().items() if spec.emulator
    }


@dataclass
class StackConfig:
    data_dir: Path
    temporal_port: int = 7233
    ui_port: int | None = 8233  # None: headless
    api_port: int = 8000
    # Per provider: its emulator's port. A provider left out (or None) is the real one, set up
    # by the environment (its key, its base URL).
    provider_ports: dict[str, int | None] = field(default_factory=default_provider_ports)
    erp_port: int | None = 8200  # None: talk to the ERP at ERP_BASE_URL
    # A pull-sync client (seed 004) with a few records, registered at start (None: none).
    pull_client_port: int | None = None
    worker_metrics_port: int | None = 9464  # the worker's Prometheus endpoint (None: off)
    database_url: str | None = None  # default: SQLite file in data_dir
    storage_backend: str = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "autosync"
    api_keys: str = "dev-key=dev:admin"
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None

    @classmethod
    def ephemeral(cls, data_dir: Path, **kw: object) -> StackConfig:
        """Free ports everywhere and no web UI: for tests and benches (`kw` may override)."""
        ports: dict[str, object] = {
            "temporal_port": free_port(),
            "ui_port": None,
            "api_port": free_port(),
            "provider_ports": {name: free_port() for name in provider_emulators()},
            "erp_port": free_port(),
            "worker_metrics_port": free_port(),
        }
        return cls(data_dir=data_dir, **{**ports, **kw})  # type: ignore[arg-type]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.log_dir = (config.log_dir or self.data_dir / "logs").resolve()
        self.temporal: ManagedProcess | None = None
        # Provider emulators by provider name.
        self.emulators: dict[str, ManagedProcess] = {}
        self.erp: ManagedProcess | None = None
        self.pull_client: ManagedProcess | None = None
        self.api: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self._worker_generation = 0

    # --- addresses ---------------------------------------------------------------------------

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.config.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    def provider_url(self, provider: str) -> str | None:
        """Where `provider`'s emulator listens (None: the stack talks to the real one)."""
        port = self.config.provider_ports.get(provider)
        return f"http://127.0.0.1:{port}" if port else None

    def emulated_providers(self) -> dict[str, ProviderSpec[Any]]:
        """The providers this stack runs an emulator for, by name."""
        return {
            name: spec for name, spec in provider_emulators().items() if self.provider_url(name)
        }

    @property
    def erp_url(self) -> str | None:
        port = self.config.erp_port
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def pull_client_url(self) -> str | None:
        port = self.config.pull_client_port
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def ui_url(self) -> str | None:
        port = self.config.ui_port
        return f"http://localhost:{port}" if port else None

    @property
    def database_url(self) -> str:
        return self.config.database_url or f"sqlite:///{self.data_dir / 'app.db'}"

    def secret_key(self) -> str:
        """SECRET_KEY of this stack: the environment's, else one made once and kept in data/."""
        given = os.environ.get("SECRET_KEY", "")
        if given:
            return given
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def app_env(self) -> dict[str, str]:
        """Environment of the API and the worker."""
        env = {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "DATABASE_URL": self.database_url,
            "STORAGE_BACKEND": self.config.storage_backend,
            "STORAGE_DIR": str(self.data_dir / "storage"),
            "S3_BUCKET": self.config.s3_bucket,
            "PUBLIC_BASE_URL": self.api_url,
            "BOOTSTRAP_API_KEYS": self.config.api_keys,
            "SECRET_KEY": self.secret_key(),
            "PYTHONUNBUFFERED": "1",
        }
        if self.ui_url:
            env["TEMPORAL_UI_URL"] = self.ui_url
        if self.config.s3_endpoint_url:
            env["S3_ENDPOINT_URL"] = self.config.s3_endpoint_url
            env.setdefault("AWS_ACCESS_KEY_ID", "testing")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        served: list[str] = []
        for name, spec in self.emulated_providers().items():
            url = self.provider_url(name)
            assert url is not None
            env.update(spec.emulator_app_env(url))
            # An exported value of these is the user's (`make up` hands them over as well).
            env.update({k: os.environ[k] for k in spec.user_first_env() if k in os.environ})
            served.append(url)
        if served:
            # The emulators serve the output files on loopback over http: the outbound fetcher
            # may fetch from exactly these origins, and from no other local address.
            env["OUTBOUND_ALLOWED_ORIGINS"] = os.environ.get(
                "OUTBOUND_ALLOWED_ORIGINS", ",".join(served)
            )
        if self.erp_url:
            env["ERP_BASE_URL"] = self.erp_url
            env["ERP_TOKENS"] = json.dumps(ERP_COMPANY_TOKENS)
        if self.config.worker_metrics_port:
            # The worker serves the SDK's metrics there; the API appends them to its /metrics.
            port = self.config.worker_metrics_port
            env["WORKER_METRICS_PORT"] = str(port)
            env["WORKER_METRICS_URLS"] = f"http://127.0.0.1:{port}/metrics"
        env.update(self.config.env)
        return env

    # --- processes ---------------------------------------------------------------------------

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_temporal()
            upgrade(self.database_url)
            self.start_emulators()
            self.start_api()
            self.start_worker()
            self.register_pull_client()
        except BaseException:
            self.stop()
            raise
        return self

    def start_temporal(self) -> None:
        args = [
            temporal_cli_path(), "server", "start-dev",
            "--db-filename", str(self.data_dir / "temporal.db"),
            "--ip", "127.0.0.1",
            "--port", str(self.config.temporal_port),
            "--log-level", "warn",
            *DEV_SERVER_TUNING,
        ]  # fmt: skip
        if self.config.ui_port:
            args += ["--ui-port", str(self.config.ui_port)]
        else:
            args.append("--headless")
        for key in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        self.temporal = ManagedProcess("temporal", args, log_dir=self.log_dir).start()
        self.temporal.wait_tcp(self.config.temporal_port, timeout=90)

    def start_emulators(self) -> None:
        """Every configured emulator, started at once, then waited for (`/_emulator/health`)."""
        for name in self.emulated_providers():
            self.emulators[name] = self._spawn_provider(name)
        if self.config.erp_port:
            self.erp = self._spawn("erp")
        if self.config.pull_client_port:
            self.pull_client = self._spawn("pull_client")
        for proc, url in (
            *((self.emulators[name], self.provider_url(name)) for name in self.emulators),
            (self.erp, self.erp_url),
            (self.pull_client, self.pull_client_url),
        ):
            if proc is not None:
                proc.wait_http(f"{url}/_emulator/health")

    def start_emulator(self, provider: str) -> None:
        """One provider's emulator alone."""
        self.emulators[provider] = self._spawn_provider(provider)
        self.emulators[provider].wait_http(f"{self.provider_url(provider)}/_emulator/health")

    def start_erp(self) -> None:
        """The ERP emulator alone (the sync bench restarts it between phases)."""
        self.erp = self._spawn("erp")
        self.erp.wait_http(f"{self.erp_url}/_emulator/health")

    def _spawn_provider(self, provider: str) -> ManagedProcess:
        """Start a provider's emulator as its spec says (not waiting); it serves its output
        files at its own URL (`{NAME}_EMULATOR_PUBLIC_URL`)."""
        spec = provider_emulators()[provider]
        url = self.provider_url(provider)
        assert url is not None and spec.emulator is not None
        env = spec.emulator_env(url, self.data_dir)
        return self._start_emulator(
            f"{provider}-emulator",
            spec.emulator.module,
            provider,
            self.config.provider_ports[provider],
            env,
        )

    def _spawn(self, module: str) -> ManagedProcess:
        """Start `python -m emulators.<module>` for the ERP or the pull client (not waiting)."""
        port = {"erp": self.config.erp_port, "pull_client": self.config.pull_client_port}[module]
        env = {
            "erp": {
                "ERP_EMULATOR_TOKENS": json.dumps({t: c for c, t in ERP_COMPANY_TOKENS.items()})
            },
            "pull_client": {"PULL_CLIENT_EMULATOR_SEED_RECORDS": "5"},
        }[module]
        name = {"erp": "erp", "pull_client": "pull-client"}[module]
        return self._start_emulator(name, f"emulators.{module}", module, port, env)

    def _start_emulator(
        self, name: str, module: str, prefix: str, port: int | None, env: dict[str, str]
    ) -> ManagedProcess:
        """`python -m <module>` on `port`; `<PREFIX>_EMULATOR_*` of the config's env apply on
        top of `env`."""
        assert port is not None
        own = f"{prefix.upper()}_EMULATOR_"
        env = {**env, **{k: v for k, v in self.config.env.items() if k.startswith(own)}}
        args = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
        return ManagedProcess(name, args, log_dir=self.log_dir, env=env, cwd=ROOT).start()

    def start_api(self) -> None:
        args = [
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.config.api_port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.api = ManagedProcess("api", args, log_dir=self.log_dir, env=self.app_env(), cwd=ROOT)
        self.api.start().wait_http(f"{self.api_url}/v1/health")

    def register_pull_client(self) -> None:
        """Register the pull-client emulator's `default` identity with the first admin key, so
        the first cycle (or a `sync-all`) pulls its records at once."""
        if not self.pull_client_url:
            return
        admin = next((k for k, _, is_admin in Settings(
            _env_file=None, bootstrap_api_keys=self.config.api_keys  # type: ignore[call-arg]
        ).bootstrap_keys() if is_admin), None)  # fmt: skip
        if admin is None:
            return
        response = httpx.post(
            f"{self.api_url}/v1/pull-sync/clients",
            json={"client_url": self.pull_client_url, "user_id": "user_1",
                  "client_type": "web", "capabilities": ["capture", "favorite"]},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )  # fmt: skip
        response.raise_for_status()

    def start_worker(self) -> None:
        self._worker_generation += 1
        self.worker = ManagedProcess(
            f"worker-{self._worker_generation}",
            [sys.executable, str(ROOT / "worker.py")],
            log_dir=self.log_dir,
            env=self.app_env(),
            cwd=ROOT,
        ).start()
        self.worker.wait_log(WORKER_READY)

    def worker_stop_timeout(self) -> float:
        """How long a SIGTERMed worker may take: its graceful shutdown, plus time to exit."""
        default = Settings.model_fields["worker_graceful_shutdown_seconds"].default
        grace = self.app_env().get("WORKER_GRACEFUL_SHUTDOWN_SECONDS") or os.environ.get(
            "WORKER_GRACEFUL_SHUTDOWN_SECONDS", default
        )
        return float(grace) + 15.0

    def stop_worker(self) -> None:
        """SIGTERM the worker, as a deploy would: running activities finish first."""
        if self.worker is not None:
            self.worker.stop(timeout=self.worker_stop_timeout())

    def kill_worker(self) -> None:
        """SIGKILL the worker, as a crash would."""
        if self.worker is not None:
            self.worker.kill()

    def stop(self) -> None:
        for proc in (
            self.worker,
            self.api,
            self.erp,
            self.pull_client,
            *reversed(self.emulators.values()),
            self.temporal,
        ):
            if proc is None:
                continue
            # An idle worker exits at once; a busy one drains first (its graceful shutdown).
            proc.stop(timeout=self.worker_stop_timeout() if proc is self.worker else 10.0)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
