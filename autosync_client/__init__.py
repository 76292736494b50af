"""A typed Python client of the autosync API (blocking and asyncio), and the `autosync` CLI.

    from autosync_client import Client
    with Client() as api:  # AUTOSYNC_URL, AUTOSYNC_API_KEY
        job = api.create_job("generation", {"prompt": "a red fox"})
        for update in api.watch_job(job.id):
            print(update.status)

The README's "CLI and Python client" section shows more.
"""

from autosync_client.client import AsyncClient, Client
from autosync_client.errors import ApiError, ApiUnreachable, AutosyncError
from autosync_client.models import (
    ApiKey,
    ApiKeyCreated,
    Batch,
    BatchStarted,
    Event,
    Job,
    JobUpdate,
    LogLine,
    RunUpdate,
    Schedule,
    SyncRun,
    Usage,
)

__all__ = [
    "ApiError",
    "ApiKey",
    "ApiKeyCreated",
    "ApiUnreachable",
    "AsyncClient",
    "AutosyncError",
    "Batch",
    "BatchStarted",
    "Client",
    "Event",
    "Job",
    "JobUpdate",
    "LogLine",
    "RunUpdate",
    "Schedule",
    "SyncRun",
    "Usage",
]
