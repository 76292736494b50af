"""The whole stack as child processes: Temporal dev server, provider emulators, API, worker.

One way to start it, used by `make up` (fixed, documented ports), by the end-to-end tests and by
the benches (free ports, temp dirs). Every process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.contracts import SEARCH_ATTRIBUTES
from core.migrate import upgrade
from core.settings import Settings
from devstack.processes import ManagedProcess, free_port, temporal_cli_path

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
]  # fmt: skip

EMULATOR_WEBHOOK_SECRET = "whsec_YXV0b3N5bmMtZGV2LXdlYmhvb2stc2VjcmV0LTMyYnk="
EMULATOR_TOKEN = "emulator-token"
EMULATOR_TRAINING_OWNER = "autosync"
FAL_EMULATOR_KEY = "fal-emulator-key"
# The fal account the emulator signs webhooks as; the API refuses other accounts' webhooks.
FAL_EMULATOR_USER_ID = "autosync-dev-user"
KIE_EMULATOR_KEY = "kie-emulator-key"
# The KIE emulator signs callbacks with this key, as KIE does once an account has created one.
KIE_EMULATOR_HMAC_KEY = "autosync-dev-kie-webhook-hmac-key"
WORKER_READY = "worker polling task queue"
# Companies of the ERP emulator and their tokens (the same map on both sides).
ERP_COMPANY_TOKENS = {"acme": "erp-dev-token", "globex": "erp-globex-token"}


@dataclass
class StackConfig:
    data_dir: Path
    temporal_port: int = 7233
    ui_port: int | None = 8233  # None: headless
    api_port: int = 8000
    emulator_port: int | None = 8100  # None: talk to the real Replicate
    fal_port: int | None = 8110  # None: talk to the real fal.ai
    kie_port: int | None = 8120  # None: talk to the real KIE.ai
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
            "emulator_port": free_port(),
            "fal_port": free_port(),
            "kie_port": free_port(),
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
        self.emulator: ManagedProcess | None = None
        self.fal: ManagedProcess | None = None
        self.kie: ManagedProcess | None = None
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

    @property
    def emulator_url(self) -> str | None:
        port = self.config.emulator_port
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def fal_url(self) -> str | None:
        port = self.config.fal_port
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def kie_url(self) -> str | None:
        port = self.config.kie_port
        return f"http://127.0.0.1:{port}" if port else None

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
        if self.emulator_url:
            env["REPLICATE_BASE_URL"] = self.emulator_url
            env["REPLICATE_API_TOKEN"] = EMULATOR_TOKEN
            env["REPLICATE_WEBHOOK_SECRET"] = EMULATOR_WEBHOOK_SECRET
            # Trainings push into models of this (emulated) account only.
            env["REPLICATE_TRAINING_OWNER"] = os.environ.get(
                "REPLICATE_TRAINING_OWNER", EMULATOR_TRAINING_OWNER
            )
        if self.fal_url:
            env["FAL_BASE_URL"] = self.fal_url
            env["FAL_API_KEY"] = FAL_EMULATOR_KEY
            env["FAL_JWKS_URL"] = f"{self.fal_url}/.well-known/jwks.json"
            env["FAL_USER_ID"] = FAL_EMULATOR_USER_ID
        if self.kie_url:
            env["KIE_BASE_URL"] = self.kie_url
            env["KIE_API_KEY"] = KIE_EMULATOR_KEY
            env["KIE_WEBHOOK_HMAC_KEY"] = KIE_EMULATOR_HMAC_KEY
        if served := [url for url in (self.emulator_url, self.fal_url, self.kie_url) if url]:
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
        if self.config.emulator_port:
            self.emulator = self._spawn("replicate")
        if self.config.fal_port:
            self.fal = self._spawn("fal")
        if self.config.kie_port:
            self.kie = self._spawn("kie")
        if self.config.erp_port:
            self.erp = self._spawn("erp")
        if self.config.pull_client_port:
            self.pull_client = self._spawn("pull_client")
        for proc, url in (
            (self.emulator, self.emulator_url),
            (self.fal, self.fal_url),
            (self.kie, self.kie_url),
            (self.erp, self.erp_url),
            (self.pull_client, self.pull_client_url),
        ):
            if proc is not None:
                proc.wait_http(f"{url}/_emulator/health")

    def start_emulator(self) -> None:
        """The Replicate emulator alone."""
        self.emulator = self._spawn("replicate")
        self.emulator.wait_http(f"{self.emulator_url}/_emulator/health")

    def start_erp(self) -> None:
        """The ERP emulator alone (the sync bench restarts it between phases)."""
        self.erp = self._spawn("erp")
        self.erp.wait_http(f"{self.erp_url}/_emulator/health")

    def _spawn(self, module: str) -> ManagedProcess:
        """Start `python -m emulators.<module>` (not waiting); `<MODULE>_EMULATOR_*` of the
        config's env apply on top of the stack's own settings."""
        ports = {
            "replicate": self.config.emulator_port,
            "fal": self.config.fal_port,
            "kie": self.config.kie_port,
            "erp": self.config.erp_port,
            "pull_client": self.config.pull_client_port,
        }
        port = ports[module]
        assert port is not None
        env = {
            "replicate": {
                "REPLICATE_EMULATOR_WEBHOOK_SECRET": EMULATOR_WEBHOOK_SECRET,
                "REPLICATE_EMULATOR_API_TOKEN": EMULATOR_TOKEN,
                "REPLICATE_EMULATOR_STATE_FILE": str(self.data_dir / "emulator-state.json"),
            },
            "fal": {
                "FAL_EMULATOR_API_KEY": FAL_EMULATOR_KEY,
                "FAL_EMULATOR_USER_ID": FAL_EMULATOR_USER_ID,
            },
            "kie": {
                "KIE_EMULATOR_API_KEY": KIE_EMULATOR_KEY,
                "KIE_EMULATOR_WEBHOOK_HMAC_KEY": KIE_EMULATOR_HMAC_KEY,
            },
            "erp": {
                "ERP_EMULATOR_TOKENS": json.dumps({t: c for c, t in ERP_COMPANY_TOKENS.items()})
            },
            "pull_client": {"PULL_CLIENT_EMULATOR_SEED_RECORDS": "5"},
        }[module]
        prefix = f"{module.upper()}_EMULATOR_"
        if module not in ("erp", "pull_client"):  # where clients find the files the emulator serves
            env[f"{prefix}PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        env.update({k: v for k, v in self.config.env.items() if k.startswith(prefix)})
        args = [sys.executable, "-m", f"emulators.{module}", "--host", "127.0.0.1",
                "--port", str(port)]  # fmt: skip
        name = {"replicate": "emulator", "erp": "erp", "pull_client": "pull-client"}.get(
            module, f"{module}-emulator"
        )
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
            self.kie,
            self.fal,
            self.emulator,
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
