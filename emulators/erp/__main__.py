"""`python -m emulators.erp --host 127.0.0.1 --port 8200`; settings from ERP_EMULATOR_*."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from emulators.erp.app import create_app
from emulators.erp.config import ErpEmulatorConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.erp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args(argv)

    config = ErpEmulatorConfig()
    logging.basicConfig(level=logging.INFO if config.log_requests else logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=False,  # the app logs requests itself when log_requests is on
        log_level="info" if config.log_requests else "warning",
        timeout_graceful_shutdown=1,  # a slow page must not hold up a stop
    )


if __name__ == "__main__":
    main()
