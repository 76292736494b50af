"""Rows as clients see them: layout and generated fields, overlaid with stored changes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from emulators.erp.changes import ChangeLog, ViewChanges
from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.generation import GENERATORS, Fields, Generator, RowSeed
from emulators.erp.layout import EPOCH, RowLayout, format_us, now_us
from emulators.erp.views import VIEWS, ViewSpec


class ViewData:
    """One company's view: every row computable by index, changed rows taken from `changes`."""

    def __init__(
        self, spec: ViewSpec, company: str, window: DataWindow, changes: ViewChanges
    ) -> None:
        self.spec = spec
        self.company = company
        self.changes = changes
        config = window.config
        self.layout = RowLayout(
            seed=config.seed,
            company=company,
            view=spec.name,
            rows=config.rows_per_view,
            start=window.start,
            days=config.data_days,
            not_after_us=window.not_after_us,
        )
        self._generator: Generator = GENERATORS[spec.name]
        # Serialized rows by index, with the revision they were made at: generating a row
        # costs ~40 µs, far more than serving it, and a real ERP's cost isn't ours to measure.
        self._encoded: dict[int, tuple[int, bytes]] = {}

    @property
    def rows(self) -> int:
        return self.layout.rows

    def updated_us(self, index: int) -> int:
        change = self.changes.get(index)
        return change.updated_us if change is not None else self.layout.when(index)[1]

    def row(self, index: int) -> Fields:
        """The row at `index` as listings serve it."""
        return self._build(index)[0]

    def row_json(self, index: int) -> bytes:
        """The row at `index` as listings serve it, as JSON (cached until the row changes)."""
        change = self.changes.get(index)
        revision = change.revision if change is not None else 0
        cached = self._encoded.get(index)
        if cached is not None and cached[0] == revision:
            return cached[1]
        encoded = orjson.dumps(self._build(index)[0])
        self._encoded[index] = (revision, encoded)
        return encoded

    def warm(self) -> int:
        """Serialize every row now, so that listings only serve; returns the row count."""
        for index in range(self.rows):
            self.row_json(index)
        return self.rows

    def row_with_details(self, index: int) -> Fields:
        """The row plus its `details` (line items, payments...), as the detail route serves it."""
        row, details = self._build(index)
        row["details"] = details
        return row

    def _build(self, index: int) -> tuple[Fields, Fields]:
        layout = self.layout
        change = self.changes.get(index)
        revision = change.revision if change is not None else 0
        day, base_updated = layout.when(index)
        business_date = layout.start + timedelta(days=day)
        seed = RowSeed(
            index=index,
            business_date=business_date,
            revision=revision,
            stable=random.Random(int.from_bytes(layout.digest(index, "fields"))),
            revised=random.Random(int.from_bytes(layout.digest(index, f"revision:{revision}"))),
        )
        fields, details = self._generator(seed)
        row: dict[str, Any] = {
            "id": self.spec.row_id(index),
            "company_id": self.company,
            self.spec.date_field: business_date.isoformat(),
            "updated_at": format_us(change.updated_us if change is not None else base_updated),
            **fields,
        }
        return row, details


@dataclass(frozen=True)
class DataWindow:
    """The days the data covers, fixed when the emulator starts (see `config.py`)."""

    config: ErpEmulatorConfig
    start: date
    not_after_us: int  # untouched rows were last updated by then

    @classmethod
    def starting_now(cls, config: ErpEmulatorConfig) -> DataWindow:
        now = now_us()
        today = (EPOCH + timedelta(microseconds=now)).date()
        return cls(config, config.first_day(today), now)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.config.data_days - 1)


class Dataset:
    """Every company's views; `ViewData` objects are cheap and made on first use."""

    def __init__(self, window: DataWindow) -> None:
        self.window = window
        self.changes = ChangeLog()
        self._views: dict[tuple[str, str], ViewData] = {}

    def view(self, company: str, view: str) -> ViewData:
        key = (company, view)
        data = self._views.get(key)
        if data is None:
            changes = self.changes.of(company, view)
            data = self._views[key] = ViewData(VIEWS[view], company, self.window, changes)
        return data

    def reset(self) -> None:
        """Forget every change (cached views hold the old change sets, so drop them too)."""
        self.changes.reset()
        self._views.clear()
