"""A job's cost: the provider's own accounting (a quantity it reports) times the price per unit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings

# Costs are kept to a millionth of a cent (the column's scale).
USD_DIGITS = 8


@dataclass(frozen=True)
class JobCost:
    """What a job cost, where that came from (`source`) and how (`detail`, shown on the job)."""

    usd: float
    source: str  # "replicate:metrics.predict_time"
    detail: dict[str, Any] = field(default_factory=dict)


def quantity(usage: Mapping[str, Any], name: str) -> float | None:
    """A number the provider reported under `name` (None if absent or not a finite number ≥ 0)."""
    value = usage.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def priced(
    settings: Settings, provider: str, model: str, usage: Mapping[str, Any], name: str, source: str
) -> JobCost | None:
    """`usage[name]` times the provider's price of `model` (PROVIDER_PRICES); None when either is
    unknown. `source` names the accounting field, as the provider spells it."""
    amount = quantity(usage, name)
    table = settings.provider_prices.get(provider)
    if amount is None or table is None:
        return None
    found = table.unit_price(model)
    if found is None:
        return None
    unit_price, hardware = found
    detail: dict[str, Any] = {name: amount, "unit_price_usd": unit_price}
    if table.unit:
        detail["unit"] = table.unit
    if hardware is not None:
        detail["hardware"] = hardware
    return JobCost(usd=round(amount * unit_price, USD_DIGITS), source=source, detail=detail)
