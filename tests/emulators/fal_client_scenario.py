"""The official fal_client driving the emulator: `python -m tests.emulators.fal_client_scenario`.

Run in its own process by `test_fal_client.py`, because fal_client reads its host once, at
import, from `FAL_QUEUE_RUN_HOST` and only speaks https: the parent sets that variable to the
emulator (served over TLS) and `SSL_CERT_FILE` to the emulator's self-signed certificate.
Prints what it saw as one JSON object; argv[1] is a webhook URL to hand to one submit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import fal_client

MODEL = "fal-ai/flux/dev"
POLL = 0.05


def sync_scenarios(client: fal_client.SyncClient, webhook_url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    handle = client.submit(MODEL, arguments={"prompt": "a cat", "num_images": 2})
    events = [type(event).__name__ for event in handle.iter_events(with_logs=True, interval=POLL)]
    seen["events"] = events
    seen["result"] = handle.get(interval=POLL)
    final = client.status(MODEL, handle.request_id, with_logs=True)
    assert isinstance(final, fal_client.Completed)
    seen["final"] = {"logs": len(final.logs or []), "metrics": final.metrics}

    updates: list[str] = []
    seen["subscribed"] = client.subscribe(
        "fal-ai/flux/schnell",
        arguments={"prompt": "a dog"},
        with_logs=True,
        interval=POLL,
        on_queue_update=lambda status: updates.append(type(status).__name__),
    )
    seen["updates"] = updates

    waiting = client.submit(MODEL, arguments={"_emulator": {"stay_queued": True}})
    queued = waiting.status()
    assert isinstance(queued, fal_client.Queued)
    waiting.cancel()
    cancelled = waiting.status()
    assert isinstance(cancelled, fal_client.Completed)
    seen["cancel"] = {"position": queued.position, "error_type": cancelled.error_type}

    failing = client.submit(MODEL, arguments={"_emulator": {"fail": "prompt is too long"}})
    try:
        failing.get(interval=POLL)
        seen["error"] = None
    except fal_client.FalClientHTTPError as exc:
        seen["error"] = {"status_code": exc.status_code, "message": str(exc)}

    hooked = client.submit(MODEL, arguments={"prompt": "hooked"}, webhook_url=webhook_url)
    hooked.get(interval=POLL)
    seen["webhook_request_id"] = hooked.request_id
    return seen


async def async_scenario() -> Any:
    client = fal_client.AsyncClient(key=os.environ["FAL_KEY"])
    handle = await client.submit(MODEL, arguments={"prompt": "async"})
    return await handle.get(interval=POLL)


def main() -> None:
    client = fal_client.SyncClient(key=os.environ["FAL_KEY"])
    seen = sync_scenarios(client, sys.argv[1])
    seen["async_result"] = asyncio.run(async_scenario())
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
