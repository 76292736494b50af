"""Settings of the ERP emulator, read from `ERP_EMULATOR_*` environment variables.

`tokens` is JSON mapping each API token to the one company it may read, e.g.
`ERP_EMULATOR_TOKENS='{"acme-token": "acme", "globex-token": "globex"}'`.

The data covers `data_days` days. By default the window ends today (the day the emulator
starts), so the rows of the last days are recent, as in a live ERP, and an incremental sync
(from 30 days back) or a schedule finds rows; `data_start` pins the window instead (tests that
sync a fixed month do). Untouched rows are last updated on their business date, never after
the emulator started: a touch stamps rows with the real clock, and incremental reads
(`updated_since`) single them out because every untouched row is older than that.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from emulators.scaffold.settings import EmulatorSettings

# Row ids carry nine digits, so this is the most rows a view can hold.
MAX_ROWS_PER_VIEW = 999_999_999


class ErpEmulatorConfig(EmulatorSettings):
    """What the emulated ERP holds and how it pages."""

    model_config = SettingsConfigDict(env_prefix="ERP_EMULATOR_", extra="ignore")

    tokens: dict[str, str] = Field(default_factory=lambda: {"erp-dev-token": "acme"})
    seed: int = 42
    rows_per_view: int = Field(default=200, ge=0, le=MAX_ROWS_PER_VIEW)
    max_page_size: int = Field(default=1000, ge=1)
    default_page_size: int = Field(default=100, ge=1)
    # None: the window ends today (a rolling window); a date pins where it starts.
    data_start: date | None = None
    data_days: int = Field(default=730, ge=1)

    @model_validator(mode="after")
    def _default_page_fits(self) -> ErpEmulatorConfig:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    @property
    def companies(self) -> frozenset[str]:
        """Every company some token can read; other companies don't exist."""
        return frozenset(self.tokens.values())

    def first_day(self, today: date) -> date:
        """The window's first day: `data_start`, or `data_days` back so the last is `today`."""
        if self.data_start is not None:
            return self.data_start
        return today - timedelta(days=self.data_days - 1)
