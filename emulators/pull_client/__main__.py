"""`python -m emulators.pull_client --host 127.0.0.1 --port 3001`; settings from PULL_CLIENT_EMULATOR_*."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from emulators.pull_client.app import create_app
from emulators.pull_client.config import PullClientEmulatorConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.pull_client", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)

    config = PullClientEmulatorConfig()
    logging.basicConfig(level=logging.INFO if config.log_requests else logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=False,  # the app logs requests itself when log_requests is on
        log_level="info" if config.log_requests else "warning",
        timeout_graceful_shutdown=1,  # a held (slow) answer must not hold up a stop
    )


if __name__ == "__main__":
    main()
