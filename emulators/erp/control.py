"""The ERP emulator's own control routes (`/_emulator/...`, no auth), besides the scaffold's
common ones (health, stats, faults, reset).

Tests use them to read what the ERP serves and to change rows.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulators.erp.deps import EmulatorDep, unknown_view
from emulators.erp.layout import format_us
from emulators.erp.problems import bad_parameter
from emulators.erp.views import VIEWS
from emulators.scaffold.app import problem

router = APIRouter(prefix="/_emulator")


class TouchRequest(BaseModel):
    """Either `count` rows spread evenly over the view, or these `ids`."""

    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(default=None, ge=1)
    ids: list[str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TouchRequest:
        if (self.count is None) == (self.ids is None):
            raise ValueError("give exactly one of count or ids")
        return self


@router.get("/info")
async def info(emulator: EmulatorDep) -> dict[str, Any]:
    """What the emulator serves: companies, views and their shape, sizes and data range."""
    config = emulator.config
    return {
        "companies": sorted(config.companies),
        "views": {
            spec.name: {"id_prefix": spec.prefix, "date_field": spec.date_field}
            for spec in VIEWS.values()
        },
        "rows_per_view": config.rows_per_view,
        "seed": config.seed,
        "data_start": emulator.window.start.isoformat(),
        "data_end": emulator.window.end.isoformat(),
        "data_days": config.data_days,
        "default_page_size": config.default_page_size,
        "max_page_size": config.max_page_size,
    }


@router.post("/rows/{company}/{view}/touch")
async def touch(
    company: str, view: str, body: TouchRequest, emulator: EmulatorDep
) -> dict[str, Any]:
    """Change rows now: `updated_at` becomes now and a field (status, quantity) changes.

    `count` rows are spread evenly over the view (the same ones for the same count).
    """
    if company not in emulator.config.companies:
        raise problem(404, "unknown company", f"no company {company!r}")
    if view not in VIEWS:
        raise unknown_view(view)
    data = emulator.view(company, view)
    if body.count is not None:
        if body.count > data.rows:
            raise bad_parameter("count", f"count must be at most {data.rows} (rows_per_view)")
        indices = [k * data.rows // body.count for k in range(body.count)]
    else:
        indices = []
        for row_id in body.ids or []:
            index = data.spec.index_of(row_id)
            if index is None or not 0 <= index < data.rows:
                raise bad_parameter("ids", f"no row {row_id!r} in {view}")
            indices.append(index)
    at = emulator.touch(data, indices)
    return {
        "company": company,
        "view": view,
        "ids": [data.spec.row_id(index) for index in indices],
        "updated_at": format_us(at),
    }


@router.post("/warm/{company}")
async def warm(company: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Serialize every row of the company's views now, so listings afterwards only serve.

    Benchmarks call it first: they measure the sync, not the emulator's row generation.
    """
    if company not in emulator.config.companies:
        raise problem(404, "unknown company", f"no company {company!r}")
    rows = {view: emulator.view(company, view).warm() for view in VIEWS}
    return {"company": company, "rows": rows}
