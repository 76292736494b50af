"""The ERP's data API (`/v1/companies/{company}/views/{view}...`), bearer-token protected.

Listings are keyset-paged in id order: `next_cursor` is the last id of the page (null on the
last page) and goes back as `after`. A row changed mid-walk keeps its id and so its place:
every row present when a walk starts is served exactly once, changed or not.

Each page also says how many rows the whole listing holds now (`total` in the body and the
`X-Total-Count` header, as many paged APIs do), so a client can reconcile what it received.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Response

from emulators.erp import paging
from emulators.erp.deps import CallerDep, EmulatorDep, view_for
from emulators.erp.faults import rows_to_mutate
from emulators.erp.filters import parse_after, parse_filters, parse_limit
from emulators.scaffold.app import problem

router = APIRouter(prefix="/v1/companies/{company}/views/{view}")


@router.get("")
async def list_rows(
    company: str,
    view: str,
    caller: CallerDep,
    emulator: EmulatorDep,
    start_date: str | None = None,
    end_date: str | None = None,
    updated_since: str | None = None,
    after: str | None = None,
    limit: str | None = None,
) -> Response:
    """One page of rows in id order, filtered by business date and `updated_at`.

    The body is assembled from cached row JSON: `{view, company, items, next_cursor, count,
    total}`; `count` is the page's rows, `total` the rows every page of these filters holds.
    """
    data = view_for(emulator, caller, company, view)
    filters = parse_filters(start_date, end_date, updated_since)
    config = emulator.config
    size = parse_limit(limit, default=config.default_page_size, maximum=config.max_page_size)
    indices, more = paging.page(data, filters, parse_after(after, data.spec), size)
    faults = emulator.faults.global_faults
    total = paging.count(data, filters)
    served = indices[: max(0, len(indices) - faults.drop_rows_per_page)]
    items = [data.row_json(index) for index in served]
    if faults.mutate_between_pages and more:
        stop = paging.plan(data, filters).window.stop
        emulator.touch(data, rows_to_mutate(data.layout, indices[-1], stop))
    if faults.slow_page_seconds:
        await asyncio.sleep(faults.slow_page_seconds)
    head = orjson.dumps({"view": view, "company": company})[:-1]
    tail = orjson.dumps(
        {
            "next_cursor": data.spec.row_id(indices[-1]) if more else None,
            "count": len(items),
            "total": total,
        }
    )[1:]
    body = b"".join((head, b',"items":[', b",".join(items), b"],", tail))
    return Response(body, media_type="application/json", headers={"X-Total-Count": str(total)})


@router.get("/count")
async def count_rows(
    company: str,
    view: str,
    caller: CallerDep,
    emulator: EmulatorDep,
    start_date: str | None = None,
    end_date: str | None = None,
    updated_since: str | None = None,
) -> dict[str, int]:
    """How many rows the same filters would list, without paging through them."""
    data = view_for(emulator, caller, company, view)
    return {"count": paging.count(data, parse_filters(start_date, end_date, updated_since))}


@router.get("/{row_id}")
async def get_row(
    company: str, view: str, row_id: str, caller: CallerDep, emulator: EmulatorDep
) -> dict[str, Any]:
    """One row with its `details` (sale items, payment history, apportionment, movements)."""
    data = view_for(emulator, caller, company, view)
    index = data.spec.index_of(row_id)
    if index is None or not 0 <= index < data.rows:
        raise problem(404, "not found", f"no row {row_id!r} in {view} of company {company!r}")
    return data.row_with_details(index)
