"""`python -m emulators.kie --host 127.0.0.1 --port 8788`; settings from KIE_EMULATOR_*."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from emulators.kie.app import create_app
from emulators.kie.config import EmulatorConfig

SHUTDOWN_GRACE_SECONDS = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.kie", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--public-url", default=None, help="base URL put in result file URLs")
    args = parser.parse_args(argv)

    config = EmulatorConfig()
    if args.public_url is not None:
        config = config.model_copy(update={"public_url": args.public_url.rstrip("/")})
    logging.basicConfig(level=logging.INFO if config.log_requests else logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=False,  # the app logs requests itself when log_requests is on
        log_level="info" if config.log_requests else "warning",
        # Pending callbacks must not keep a stop from finishing.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


if __name__ == "__main__":
    main()
