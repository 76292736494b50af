"""In-process checks of the ERP emulator's parts: layout arithmetic, filters, paging, limiter.

Paging and counting skip most rows by index arithmetic; these tests compare them with the
obvious row-by-row answer on small views of awkward shapes.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from emulators.erp import paging
from emulators.erp.changes import ViewChanges
from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.dataset import DataWindow, ViewData
from emulators.erp.filters import Filters, parse_after, parse_datetime, parse_filters, parse_limit
from emulators.erp.generation import money, split_cents
from emulators.erp.layout import DAY_US, epoch_us, format_us
from emulators.erp.ratelimit import SlidingWindowLimiter, retry_after_seconds
from emulators.erp.views import VIEWS
from emulators.erp.vocabulary import cnpj
from emulators.scaffold.app import ApiError

START = date(2024, 1, 1)


def make_view(rows: int, days: int, view: str = "vw_vendas") -> ViewData:
    config = ErpEmulatorConfig(rows_per_view=rows, data_days=days, data_start=START, seed=7)
    return ViewData(VIEWS[view], "acme", DataWindow.starting_now(config), ViewChanges())


def brute_force(data: ViewData, filters: Filters) -> list[int]:
    return [i for i in range(data.rows) if paging.keeps(data, filters, i)]


@pytest.mark.parametrize(("rows", "days"), [(97, 30), (10, 730), (1000, 7), (300, 1), (0, 5)])
def test_layout_days_rise_with_the_index_and_stay_in_range(rows: int, days: int) -> None:
    data = make_view(rows, days)
    layout = data.layout
    base_days = [layout.base_day(i) for i in range(rows)]
    assert base_days == sorted(base_days)
    for day in range(-2, days + 3):
        expected = next((i for i, d in enumerate(base_days) if d >= day), rows)
        assert layout.first_index_from_day(day) == expected
    for i in range(rows):
        day, updated = layout.when(i)
        assert layout.base_day(i) <= day <= min(days - 1, layout.base_day(i) + layout.jitter_days)
        assert layout.day_of(updated) == day


@pytest.mark.parametrize(("rows", "days"), [(97, 30), (10, 730), (1000, 7), (300, 1), (5000, 730)])
def test_pages_and_counts_match_the_row_by_row_answer(rows: int, days: int) -> None:
    rng = random.Random(rows * 31 + days)
    data = make_view(rows, days)
    # Changes at assorted moments, some earlier than the rows' own dates, to exercise both ways.
    for _ in range(3):
        moment = epoch_us(datetime(2024, 1, 1, tzinfo=UTC)) + rng.randrange(days + 2) * DAY_US
        data.changes.touch(rng.sample(range(rows), min(rows, 6)), moment)
    span = days + 8
    for _ in range(60):
        start = START + timedelta(days=rng.randrange(-4, span)) if rng.random() < 0.6 else None
        end = START + timedelta(days=rng.randrange(-4, span)) if rng.random() < 0.6 else None
        if start is not None and end is not None and end < start:
            start, end = end, start
        since = None
        if rng.random() < 0.6:
            since = epoch_us(datetime(2024, 1, 1, tzinfo=UTC)) + rng.randrange(
                -2 * DAY_US, span * DAY_US
            )
        filters = Filters(start, end, since)
        expected = brute_force(data, filters)
        assert paging.count(data, filters) == len(expected), filters
        assert list(paging.matching(data, filters)) == expected, filters
        walked: list[int] = []
        after = 0
        while True:
            found, more = paging.page(data, filters, after, 7)
            walked += found
            if not more:
                break
            after = found[-1] + 1
        assert walked == expected


def test_touching_changes_updated_at_and_a_field_every_time() -> None:
    for name in VIEWS:
        data = make_view(50, 30, name)
        before = data.row_with_details(10)
        seen = [before]
        for revision in range(1, 4):
            data.changes.touch([10], epoch_us(datetime(2026, 1, 1, tzinfo=UTC)) + revision)
            after = data.row_with_details(10)
            changed = {k for k in after if after[k] != seen[-1][k]} - {"updated_at", "details"}
            assert changed, f"{name} revision {revision} changed no field"
            assert after["id"] == before["id"]
            assert after[data.spec.date_field] == before[data.spec.date_field]
            seen.append(after)
        assert data.row(11) == make_view(50, 30, name).row(11)


def test_details_add_up_to_the_row_totals() -> None:
    def cents(value: str) -> int:
        return round(float(value) * 100)

    for i in range(40):
        sale = make_view(40, 30, "vw_vendas").row_with_details(i)
        assert sum(cents(item["valor_total"]) for item in sale["details"]["itens"]) == cents(
            sale["valor_total"]
        )
        receivable = make_view(40, 30, "vw_contas_receber_posicao").row_with_details(i)
        paid = sum(cents(p["valor"]) for p in receivable["details"]["historico_pagamentos"])
        assert paid == cents(receivable["valor_recebido"])
        assert cents(receivable["saldo"]) == cents(receivable["valor_original"]) - paid
        stock = make_view(40, 30, "vw_estoque").row_with_details(i)
        moves = sum(m["quantidade"] for m in stock["details"]["movimentacoes"])
        assert stock["details"]["saldo_anterior"] >= 0
        assert stock["details"]["saldo_anterior"] + moves == stock["quantidade"]


def test_sliding_window_never_admits_more_than_the_limit_in_a_calendar_second() -> None:
    rng = random.Random(3)
    for limit in (1, 2.5, 5, 10):
        limiter = SlidingWindowLimiter()
        admitted: Counter[int] = Counter()
        now = 1_700_000_000.0
        for _ in range(2000):
            now += rng.expovariate(40)
            wait = limiter.admit("t", limit, now)
            if wait is None:
                admitted[int(now)] += 1
            else:
                assert 0 < wait <= 1
        assert max(admitted.values()) == int(limit)
    limiter = SlidingWindowLimiter()
    assert limiter.admit("t", 0.5, 10.0) is None
    assert limiter.admit("t", 0.5, 11.5) == pytest.approx(0.5)
    assert limiter.admit("t", 0.5, 12.0) is None
    assert limiter.admit("other", 0.5, 12.0) is None  # per key
    # The Retry-After header carries whole seconds, rounded up, never 0 (a protocol value).
    header_values = [retry_after_seconds(wait) for wait in (0.01, 1.2)]
    assert header_values == [1, 2]


def test_parameter_errors_name_the_parameter_and_the_expected_form() -> None:
    with pytest.raises(ApiError) as caught:
        parse_filters("2024/01/01", None, None)
    assert caught.value.status_code == 422
    assert (body := caught.value.body) is not None
    assert body["parameter"] == "start_date"
    assert "YYYY-MM-DD" in body["detail"]
    with pytest.raises(ApiError) as caught:
        parse_filters("2024-02-01", "2024-01-31", None)
    assert (body := caught.value.body) is not None and body["parameter"] == "end_date"
    with pytest.raises(ApiError) as caught:
        parse_limit("1001", default=100, maximum=1000)
    assert (body := caught.value.body) is not None and "1000" in body["detail"]
    with pytest.raises(ApiError):
        parse_after("CR000000001", VIEWS["vw_vendas"])
    assert parse_after("V000000010", VIEWS["vw_vendas"]) == 10
    assert parse_after(None, VIEWS["vw_vendas"]) == 0


def test_datetimes_accept_z_offsets_naive_and_a_decoded_plus() -> None:
    expected = datetime(2024, 5, 1, 12, tzinfo=UTC)
    for raw in (
        "2024-05-01T12:00:00Z",
        "2024-05-01T09:00:00-03:00",
        "2024-05-01T12:00:00",
        "2024-05-01T14:00:00 02:00",
    ):
        assert parse_datetime(raw) == expected, raw
    for raw in ("yesterday", "05/01/2024", "2024-05-01Tnoon"):
        with pytest.raises(ApiError):
            parse_datetime(raw)
    assert format_us(epoch_us(expected) + 5) == "2024-05-01T12:00:00.000005Z"


def test_money_split_and_cnpj() -> None:
    assert money(123456) == "1234.56"
    assert money(5) == "0.05"
    assert sum(split_cents(1001, 3, random.Random(1))) == 1001
    assert cnpj(11_222_333) == "11.222.333/0001-81"  # the well-known valid example
