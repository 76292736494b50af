"""Settings of the ERP emulator, read from `ERP_EMULATOR_*` environment variables.

`tokens` is JSON mapping each API token to the one company it may read, e.g.
`ERP_EMULATOR_TOKENS='{"acme-token": "acme", "globex-token": "globex"}'`.

Untouched rows are dated inside the data range (their `updated_at` falls on their business
date), so keep the range in the past: a touch stamps rows with the real clock, and incremental
reads (`updated_since`) only single them out when every untouched row is older than that.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Row ids carry nine digits, so this is the most rows a view can hold.
MAX_ROWS_PER_VIEW = 999_999_999


class ErpEmulatorConfig(BaseSettings):
    """What the emulated ERP holds and how it pages."""

    model_config = SettingsConfigDict(env_prefix="ERP_EMULATOR_", extra="ignore")

    tokens: dict[str, str] = Field(default_factory=lambda: {"erp-dev-token": "acme"})
    seed: int = 42
    rows_per_view: int = Field(default=200, ge=0, le=MAX_ROWS_PER_VIEW)
    max_page_size: int = Field(default=1000, ge=1)
    default_page_size: int = Field(default=100, ge=1)
    data_start: date = date(2024, 1, 1)
    data_days: int = Field(default=730, ge=1)
    log_requests: bool = False

    @model_validator(mode="after")
    def _default_page_fits(self) -> ErpEmulatorConfig:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    @property
    def companies(self) -> frozenset[str]:
        """Every company some token can read; other companies don't exist."""
        return frozenset(self.tokens.values())
