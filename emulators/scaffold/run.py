"""The `python -m emulators.<name>` runner every emulator's `__main__` calls."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from emulators.scaffold.settings import EmulatorSettings, ProviderSettings

S = TypeVar("S", bound=EmulatorSettings)
# Slow file downloads, held answers and pending webhooks must not keep a stop from reaching
# the lifespan shutdown (where the Replicate emulator writes its state file a last time).
SHUTDOWN_GRACE_SECONDS = 2
# What uvicorn logs when the app ends an answer early on purpose (a dropped connection).
_DROPPED = "ASGI callable returned without completing response."


class _HideDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROPPED


def main(
    module: str,
    description: str | None,
    create_app: Callable[[S], FastAPI],
    settings: Callable[[], S],
    *,
    port: int,
    tls: bool = False,
    argv: list[str] | None = None,
) -> None:
    """Parse `--host`, `--port` (and `--public-url`, `--ssl-*` where they apply) and serve."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    config = settings()
    if isinstance(config, ProviderSettings):
        parser.add_argument(
            "--public-url", default=None, help="base URL put in the URLs the emulator hands out"
        )
    if tls:
        # HTTPS lets clients that only speak https:// (fal_client) talk to the emulator.
        parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this cert")
        parser.add_argument("--ssl-keyfile", default=None, help="the certificate's private key")
    args = parser.parse_args(argv)
    if getattr(args, "public_url", None) is not None:
        config = config.model_copy(update={"public_url": args.public_url.rstrip("/")})
    logging.basicConfig(level=logging.INFO if config.log_requests else logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=False,  # the app logs requests itself when log_requests is on
        log_level="info" if config.log_requests else "warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        ssl_certfile=getattr(args, "ssl_certfile", None),
        ssl_keyfile=getattr(args, "ssl_keyfile", None),
    )
