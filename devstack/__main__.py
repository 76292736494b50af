"""`python -m devstack up` (what `make up` runs): the whole stack on this machine, until Ctrl-C.

Temporal dev server (SQLite file under data/, web UI on :8233), an emulator for each provider
whose credentials are not set (Replicate: REPLICATE_API_TOKEN, fal.ai: FAL_API_KEY, KIE.ai:
KIE_API_KEY), the API on :8000 and a worker. State lives in data/, so after a restart the jobs
that were in flight carry on. `--db postgres` (`make up DB=postgres`) puts the app database on a
PostgreSQL cluster kept in data/postgres (devstack/app_database.py) instead of SQLite.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from core.settings import Settings
from devstack.app_database import DEFAULT_PORT, start_local_postgres
from devstack.stack import ROOT, Stack, StackConfig
from devstack.supervise import GaveUp, Supervisor, stack_processes

# The embedded stack's ERP is big enough, and polite enough (5 requests/s), that a month's
# sync takes a few seconds: long enough to watch its modules advance.
WATCHABLE_SYNC = {
    "ERP_EMULATOR_ROWS_PER_VIEW": "20000",
    "SYNC_PAGE_SIZE": "200",
    "SYNC_MIN_INTERVAL_SECONDS": "0.2",
}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["up"])
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="app database: a SQLite file, or a PostgreSQL cluster kept in data/postgres "
        "(`make up DB=postgres`)",
    )
    args = parser.parse_args()
    data_dir = Path(os.environ.get("AUTOSYNC_DATA_DIR", ROOT / "data"))
    database_url = os.environ.get("DATABASE_URL")
    postgres = None
    if args.db == "postgres":
        if database_url:
            parser.error("DATABASE_URL is set and names the database: unset it or drop DB=postgres")
        print(f"starting PostgreSQL (cluster in {data_dir / 'postgres'}) …", flush=True)
        postgres, database_url = start_local_postgres(
            data_dir, _env_int("POSTGRES_PORT", DEFAULT_PORT)
        )

    real_replicate = bool(os.environ.get("REPLICATE_API_TOKEN"))
    real_fal = bool(os.environ.get("FAL_API_KEY"))
    real_kie = bool(os.environ.get("KIE_API_KEY"))
    config = StackConfig(
        data_dir=data_dir,
        temporal_port=_env_int("TEMPORAL_PORT", 7233),
        ui_port=_env_int("TEMPORAL_UI_PORT", 8233),
        api_port=_env_int("API_PORT", 8000),
        emulator_port=None if real_replicate else _env_int("EMULATOR_PORT", 8100),
        fal_port=None if real_fal else _env_int("FAL_EMULATOR_PORT", 8110),
        kie_port=None if real_kie else _env_int("KIE_EMULATOR_PORT", 8120),
        erp_port=None if os.environ.get("ERP_BASE_URL") else _env_int("ERP_EMULATOR_PORT", 8200),
        database_url=database_url,
        storage_backend=os.environ.get("STORAGE_BACKEND", "local"),
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
        s3_bucket=os.environ.get("S3_BUCKET", "autosync"),
        api_keys=os.environ.get("BOOTSTRAP_API_KEYS", "dev-key=dev:admin"),
        env={**WATCHABLE_SYNC, **{k: os.environ[k] for k in WATCHABLE_SYNC if k in os.environ}},
    )
    stack = Stack(config)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    print("starting the autosync stack (logs in data/logs/) …", flush=True)
    try:
        stack.start()
    except BaseException:
        if postgres is not None:
            postgres.stop()
        raise
    api = f"http://localhost:{config.api_port}"
    replicate = "real Replicate" if real_replicate else f"emulator at {stack.emulator_url}"
    fal = "real fal.ai" if real_fal else f"emulator at {stack.fal_url}"
    kie = "real KIE.ai" if real_kie else f"emulator at {stack.kie_url}"
    default_provider = Settings().default_provider  # as the API reads it (env, then .env)
    print(
        f"""
autosync is up
  API           {api}          (OpenAPI docs: {api}/docs)
  Temporal UI   {stack.ui_url}
  Temporal      {stack.temporal_address}
  Replicate     {replicate}
  fal.ai        {fal}
  KIE.ai        {kie}
  providers     replicate, fal, kie   (per job: "provider"; default: {default_provider})
  ERP           {stack.erp_url or os.environ.get("ERP_BASE_URL")}   (companies: acme, globex)
  database      {stack.database_url}
  storage       {config.storage_backend} ({config.data_dir / "storage"})
  dev API key   dev-key        (admin; try the README's curl examples)

A process that crashes is restarted (with backoff; the stack stops if one keeps crashing).
Ctrl-C stops everything; jobs in flight carry on after the next `make up`.
""",
        flush=True,
    )
    supervisor = Supervisor(stack_processes(stack), say=lambda line: print(line, flush=True))
    try:
        while not stopping.wait(1.0):
            supervisor.check()
    except GaveUp as exc:
        print(f"giving up: {exc}", flush=True)
    finally:
        print("stopping …", flush=True)
        stack.stop()
        if postgres is not None:
            postgres.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
