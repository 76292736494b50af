"""Settings shared by the API, the worker and the stack runner, read from the environment.

Every variable is documented in `.env.example`; defaults are the embedded one-command stack.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODELS = {
    "generation": "black-forest-labs/flux-schnell",
    "edit": "black-forest-labs/flux-kontext-pro",
    "upscale": "nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
    "video": "minimax/video-01",
    "training": "ostris/flux-dev-lora-trainer:e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    media_task_queue: str = "media-jobs"
    temporal_ui_url: str = "http://localhost:8233"

    # App database: SQLite file by default, PostgreSQL by URL (postgresql://user:pw@host/db)
    database_url: str = "sqlite:///data/app.db"

    # Where outputs are kept
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: str = "data/storage"
    s3_bucket: str = "autosync"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_presign_seconds: int = 3600

    # How providers reach us: webhook URLs and permanent output URLs are built from this
    public_base_url: str = "http://localhost:8000"

    # Replicate
    replicate_api_token: str = ""
    replicate_base_url: str = "https://api.replicate.com"
    replicate_webhook_secret: str = ""
    replicate_webhook_events: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["completed"]
    )

    # Webhook bridge
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 8 * 1024 * 1024

    # Poll fallback: every `poll_interval_seconds` until a job is `poll_backoff_after_seconds`
    # old, then growing by half each poll up to the maximum (per kind: training waits longer).
    poll_interval_seconds: float = 10.0
    poll_backoff_after_seconds: float = 60.0
    max_poll_interval_seconds: float = 300.0
    training_max_poll_interval_seconds: float = 900.0

    # Sync runs (seed 002): the upstream ERP and how hard we may hit it
    sync_task_queue: str = "sync-runs"
    erp_task_queue: str = "erp-sync"
    erp_base_url: str = "http://127.0.0.1:8200"
    # Company id -> ERP API token, as JSON: {"acme": "erp-dev-token"}
    erp_tokens: dict[str, str] = Field(default_factory=dict)
    # Minimum seconds between upstream requests, for all runs and workers together (0: none).
    # Every worker must use the same value: it becomes the ERP task queue's rate limit.
    sync_min_interval_seconds: float = 0.0
    sync_concurrency: int = 1
    sync_max_retries: int = 5
    sync_page_size: int = 1000
    # Pages one activity fetches in a row (each committed on its own). More pages per activity
    # spread Temporal's per-activity cost over more rows; the ERP task queue's rate limit is
    # divided by it, so the requests per second stay the same.
    sync_pages_per_activity: int = Field(default=10, ge=1, le=1000)
    # Records per run whose detail endpoint is fetched to enrich them (0: no enrichment)
    max_enrich_per_run: int = 0

    # API keys created at start-up, "key=user[:admin]" separated by commas.
    bootstrap_api_keys: str = ""

    # Worker tuning
    # ~180 KB of worker memory per cached (sandboxed) workflow; an evicted one replays its
    # history at its next task. 500 keeps a worker under 250 MB with 2,000 jobs in flight.
    worker_max_cached_workflows: int = 500
    worker_max_concurrent_activities: int = 200
    worker_sandboxed: bool = True

    @field_validator("replicate_webhook_events", mode="before")
    @classmethod
    def _split_events(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def default_model(self, kind: str) -> str:
        return DEFAULT_MODELS[kind]

    def bootstrap_keys(self) -> list[tuple[str, str, bool]]:
        """Parse `bootstrap_api_keys` into (key, user_id, is_admin) triples."""
        keys: list[tuple[str, str, bool]] = []
        for item in self.bootstrap_api_keys.split(","):
            item = item.strip()
            if not item:
                continue
            key, _, owner = item.partition("=")
            user, _, role = owner.partition(":")
            if not key or not user:
                raise ValueError(
                    f"BOOTSTRAP_API_KEYS entry {item!r} must look like key=user[:admin]"
                )
            keys.append((key, user, role == "admin"))
        return keys


@lru_cache
def get_settings() -> Settings:
    return Settings()
