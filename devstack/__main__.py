"""`python -m devstack up` (what `make up` runs): the whole stack on this machine, until Ctrl-C.

Temporal dev server (SQLite file under data/, web UI on :8233), an emulator for each provider
whose key is not set (Replicate: REPLICATE_API_TOKEN, fal.ai: FAL_API_KEY, KIE.ai: KIE_API_KEY;
each provider's spec names its key and its emulator), the API on :8000 and a worker. Exported variables, then `.env`, win over the stack's defaults
(devstack/user_settings.py). State lives in data/, so after a restart the jobs that were in
flight carry on. `--db postgres` (`make up DB=postgres`) puts the app database on a PostgreSQL
cluster kept in data/postgres (devstack/app_database.py) instead of SQLite.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading

from core.settings import Settings
from devstack.app_database import DEFAULT_PORT, start_local_postgres
from devstack.stack import Stack
from devstack.supervise import GaveUp, Supervisor, stack_processes
from devstack.user_settings import (
    UserSettings,
    providers,
    settings_block,
    shown_value,
    stack_config,
    webhook_warning,
)
from providers import registry


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

    user = UserSettings.load()
    # The providers the API and the worker will know (PROVIDER_MODULES too), as they read
    # them (env, then .env): an unknown DEFAULT_PROVIDER stops here, before anything starts.
    registry.configure(Settings())
    config = stack_config(user)
    postgres = None
    if args.db == "postgres":
        if config.database_url:
            parser.error("DATABASE_URL is set and names the database: unset it or drop DB=postgres")
        print(f"starting PostgreSQL (cluster in {config.data_dir / 'postgres'}) …", flush=True)
        postgres, database_url = start_local_postgres(
            config.data_dir, int(user.get("POSTGRES_PORT") or DEFAULT_PORT)
        )
        config = dataclasses.replace(config, database_url=database_url)
    stack = Stack(config)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    print(settings_block(stack, user), flush=True)
    public_base_url = stack.app_env()["PUBLIC_BASE_URL"]  # what the API and worker are given
    warning = webhook_warning(public_base_url, user.real_providers())
    if warning:
        print(f"\n{warning}\n", flush=True)
    print(f"starting the autosync stack (logs in {stack.log_dir}/) …", flush=True)
    try:
        stack.start()
    except BaseException:
        if postgres is not None:
            postgres.stop()
        raise
    api = f"http://localhost:{config.api_port}"
    known = providers()
    provider_lines = "\n".join(
        f"  {p.label:<14}"
        + (f"emulator at {url}" if (url := stack.provider_url(p.name)) else f"real {p.label}")
        for p in known
    )
    default_provider = Settings().default_provider  # as the API reads it (env, then .env)
    keys = (
        "dev-key        (admin; try the README's curl examples)"
        if config.api_keys == "dev-key=dev:admin"
        else "from BOOTSTRAP_API_KEYS"
    )
    env = stack.app_env()
    where = (
        env["STORAGE_DIR"] if config.storage_backend == "local" else f"bucket {env['S3_BUCKET']}"
    )
    webhooks = public_base_url + ("   (unreachable: see the WARNING above)" if warning else "")
    print(
        f"""
autosync is up
  API           {api}          (OpenAPI docs: {api}/docs)
  Temporal UI   {stack.ui_url}
  Temporal      {stack.temporal_address}
{provider_lines}
  providers     {", ".join(p.name for p in known)}   (per job: "provider"; default: {default_provider})
  ERP           {stack.erp_url or user.get("ERP_BASE_URL")}   (companies: acme, globex)
  pull client   {stack.pull_client_url or "none"}   (registered for user_1; pulled every 30 s)
  database      {shown_value("DATABASE_URL", stack.database_url)}
  storage       {config.storage_backend} ({where})
  dev API key   {keys}
  webhooks to   {webhooks}

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
