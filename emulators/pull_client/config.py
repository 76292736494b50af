"""Settings of the pull-client emulator, read from `PULL_CLIENT_EMULATOR_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from emulators.scaffold.settings import EmulatorSettings


class PullClientEmulatorConfig(EmulatorSettings):
    """Which identities exist at start and how big a page of pending records may be."""

    model_config = SettingsConfigDict(env_prefix="PULL_CLIENT_EMULATOR_", extra="ignore")

    # The `default` identity (unprefixed routes): its user and the records it starts with.
    default_user_id: str = "user_1"
    seed_records: int = Field(default=0, ge=0, le=100_000)
    # sync-data pages: what `limit` is when absent, and its largest honoured value.
    default_page_size: int = Field(default=100, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    # How long a `slow` (or `slow_acknowledge`) fault holds an answer (by default longer than
    # the backend's 15 s timeout).
    slow_seconds: float = Field(default=20.0, ge=0, le=600)
    # Records in a `huge` answer's padding, in bytes.
    huge_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
