"""The emulator's whole state, one object per app: data, changes, faults, limiter, stats."""

from __future__ import annotations

from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.dataset import Dataset, ViewData
from emulators.erp.faults import FaultBook
from emulators.erp.layout import now_us
from emulators.erp.ratelimit import SlidingWindowLimiter
from emulators.erp.stats import Stats


class ErpEmulator:
    def __init__(self, config: ErpEmulatorConfig) -> None:
        self.config = config
        self.dataset = Dataset(config)
        self.faults = FaultBook()
        self.limiter = SlidingWindowLimiter()
        self.stats = Stats()

    def view(self, company: str, view: str) -> ViewData:
        return self.dataset.view(company, view)

    def touch(self, data: ViewData, indices: list[int]) -> int:
        """Change these rows now (next revision, `updated_at` = now); returns that moment."""
        at = now_us()
        data.changes.touch(indices, at)
        return at

    def reset(self) -> None:
        """Back to the generated data, no faults, empty counters."""
        self.dataset.reset()
        self.faults.reset()
        self.limiter.reset()
        self.stats.clear()
