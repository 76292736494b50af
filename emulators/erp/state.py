"""The emulator's whole state, one object per app: data, changes, limiter, admissions."""

from __future__ import annotations

from typing import Any

from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.dataset import Dataset, DataWindow, ViewData
from emulators.erp.faults import Faults
from emulators.erp.layout import now_us
from emulators.erp.ratelimit import Admissions, SlidingWindowLimiter
from emulators.scaffold.emulator import EmulatorBase

# Data request kinds; control routes (`/_emulator/...`) are not counted.
REQUEST_KINDS = ("list", "count", "detail", "other")


class ErpEmulator(EmulatorBase[ErpEmulatorConfig, Faults]):
    def __init__(self, config: ErpEmulatorConfig) -> None:
        super().__init__(config, Faults, request_kinds=REQUEST_KINDS)
        self.dataset = Dataset(DataWindow.starting_now(config))
        self.limiter = SlidingWindowLimiter()
        self.admissions = Admissions()

    @property
    def window(self) -> DataWindow:
        return self.dataset.window

    def view(self, company: str, view: str) -> ViewData:
        return self.dataset.view(company, view)

    def touch(self, data: ViewData, indices: list[int]) -> int:
        """Change these rows now (next revision, `updated_at` = now); returns that moment."""
        at = now_us()
        data.changes.touch(indices, at)
        return at

    def stats_extra(self) -> dict[str, Any]:
        return self.admissions.snapshot()

    def clear_faults(self) -> None:
        super().clear_faults()
        self.limiter.reset()

    def forget(self) -> None:
        """Back to the generated data, no rate limit history."""
        self.dataset.reset()
        self.limiter.reset()
        self.admissions.clear()
