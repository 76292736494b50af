"""`python -m devstack up` (what `make up` runs): the whole stack on this machine, until Ctrl-C.

Temporal dev server (SQLite file under data/, web UI on :8233), the Replicate emulator (unless
REPLICATE_API_TOKEN is set), the API on :8000 and a worker. State lives in data/, so after a
restart the jobs that were in flight carry on.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from devstack.stack import ROOT, Stack, StackConfig

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
    parser.parse_args()

    real_replicate = bool(os.environ.get("REPLICATE_API_TOKEN"))
    config = StackConfig(
        data_dir=Path(os.environ.get("AUTOSYNC_DATA_DIR", ROOT / "data")),
        temporal_port=_env_int("TEMPORAL_PORT", 7233),
        ui_port=_env_int("TEMPORAL_UI_PORT", 8233),
        api_port=_env_int("API_PORT", 8000),
        emulator_port=None if real_replicate else _env_int("EMULATOR_PORT", 8100),
        erp_port=None if os.environ.get("ERP_BASE_URL") else _env_int("ERP_EMULATOR_PORT", 8200),
        database_url=os.environ.get("DATABASE_URL"),
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
    stack.start()
    api = f"http://localhost:{config.api_port}"
    provider = "real Replicate" if real_replicate else f"emulator at {stack.emulator_url}"
    print(
        f"""
autosync is up
  API           {api}          (OpenAPI docs: {api}/docs)
  Temporal UI   {stack.ui_url}
  Temporal      {stack.temporal_address}
  Replicate     {provider}
  ERP           {stack.erp_url or os.environ.get("ERP_BASE_URL")}   (companies: acme, globex)
  database      {stack.database_url}
  storage       {config.storage_backend} ({config.data_dir / "storage"})
  dev API key   dev-key        (admin; try the README's curl examples)

Ctrl-C stops everything; jobs in flight carry on after the next `make up`.
""",
        flush=True,
    )
    try:
        while not stopping.wait(1.0):
            for proc in (stack.temporal, stack.emulator, stack.erp, stack.api, stack.worker):
                if proc is not None and not proc.alive():
                    print(f"{proc.name} exited; see {proc.log_path}", flush=True)
                    stopping.set()
    finally:
        print("stopping …", flush=True)
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
