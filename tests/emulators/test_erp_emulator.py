"""The ERP emulator as a real child process: paging, filters, details, auth, errors, faults.

Three emulators start side by side once for the module: the one most tests use (300 rows a
view), a twin with the same seed (determinism across processes) and one with 300,000 rows a
view (nothing may be precomputed). Each test starts from a reset emulator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import psutil
import pytest

from devstack.processes import ManagedProcess
from tests.emulators.erp_support import (
    DATE_FIELDS,
    OTHER_TOKEN,
    TOKEN,
    VIEWS,
    count,
    erp_process,
    rows_path,
    walk,
)

ROWS = 300
MAX_PAGE = 250
BIG_ROWS = 300_000
# A pinned window, so these tests can name its days (the default rolls with the calendar).
START = "2024-01-01"
SMALL = {
    "rows_per_view": ROWS,
    "max_page_size": MAX_PAGE,
    "default_page_size": 40,
    "seed": 42,
    "data_start": START,
}


@dataclass
class Emulators:
    main: str
    twin: str
    big: str
    big_process: ManagedProcess
    big_ready_seconds: float


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    log_dir = tmp_path_factory.mktemp("erp-emulator-logs")
    main, main_url = erp_process("erp-main", log_dir, **SMALL)
    twin, twin_url = erp_process("erp-twin", log_dir, **SMALL)
    big, big_url = erp_process("erp-big", log_dir, rows_per_view=BIG_ROWS, data_start=START)
    started = time.monotonic()
    with main, twin, big:  # started together; the machine has two cores to share
        big.wait_http(f"{big_url}/_emulator/health", timeout=30)
        big_ready = time.monotonic() - started
        main.wait_http(f"{main_url}/_emulator/health", timeout=30)
        twin.wait_http(f"{twin_url}/_emulator/health", timeout=30)
        yield Emulators(main_url, twin_url, big_url, big, big_ready)


def client(base_url: str, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=15)


@pytest.fixture
def api(emulators: Emulators) -> Iterator[httpx.Client]:
    """A client of the main emulator, reset before the test."""
    with client(emulators.main) as http:
        http.post("/_emulator/reset").raise_for_status()
        yield http


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


# --- paging -------------------------------------------------------------------------------


def test_keyset_walk_of_every_view_gives_count_distinct_rows_in_id_order(
    api: httpx.Client,
) -> None:
    for view in VIEWS:
        rows = walk(api, view, limit=37)
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)) == count(api, view) == ROWS
        assert ids == sorted(ids)
        assert all(row["company_id"] == "acme" for row in rows)
        assert all(DATE_FIELDS[view] in row and "updated_at" in row for row in rows)


def test_page_size_defaults_and_maximum(api: httpx.Client) -> None:
    page = api.get(rows_path("vw_vendas")).json()
    assert page["count"] == 40 and page["next_cursor"] == page["items"][-1]["id"]
    assert api.get(rows_path("vw_vendas"), params={"limit": MAX_PAGE}).status_code == 200
    last = api.get(rows_path("vw_vendas"), params={"after": "V000000299"}).json()
    assert [row["id"] for row in last["items"]] == ["V000000300"]
    assert last["next_cursor"] is None
    past_the_end = api.get(rows_path("vw_vendas"), params={"after": "V000000300"}).json()
    assert past_the_end["items"] == [] and past_the_end["next_cursor"] is None
    for bad in (MAX_PAGE + 1, 0, "ten"):
        response = api.get(rows_path("vw_vendas"), params={"limit": bad})
        assert response.status_code == 422
        assert response.json()["parameter"] == "limit"
        assert str(MAX_PAGE) in response.json()["detail"]


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["vw_vendas", "vw_contas_pagas"])
def test_date_window_keeps_exactly_the_rows_dated_inside_it(api: httpx.Client, view: str) -> None:
    field = DATE_FIELDS[view]
    everything = walk(api, view, limit=MAX_PAGE)
    for start, end in [
        ("2024-03-01", "2024-03-31"),
        ("2024-06-15", "2024-06-15"),
        ("2023-12-01", "2024-01-10"),
        ("2025-12-20", "2026-03-01"),
        ("2024-01-01", "2025-12-31"),
    ]:
        expected = [row["id"] for row in everything if start <= row[field] <= end]
        got = walk(api, view, limit=37, start_date=start, end_date=end)
        assert [row["id"] for row in got] == expected, (start, end)
        assert count(api, view, start_date=start, end_date=end) == len(expected)
    only_start = [row["id"] for row in everything if row[field] >= "2025-07-01"]
    assert [r["id"] for r in walk(api, view, limit=99, start_date="2025-07-01")] == only_start
    assert count(api, view, start_date="2030-01-01") == 0


def test_updated_since_returns_only_rows_changed_after_it(api: httpx.Client) -> None:
    everything = walk(api, "vw_contas_receber_posicao", limit=MAX_PAGE)
    # Untouched rows: strictly after the given moment, to the microsecond.
    since = "2025-03-10T12:00:00Z"
    expected = [r["id"] for r in everything if r["updated_at"] > "2025-03-10T12:00:00.000000Z"]
    assert 0 < len(expected) < ROWS
    got = walk(api, "vw_contas_receber_posicao", limit=37, updated_since=since)
    assert [row["id"] for row in got] == expected
    assert count(api, "vw_contas_receber_posicao", updated_since=since) == len(expected)

    before = now_iso()
    touched = api.post(
        "/_emulator/rows/acme/vw_contas_receber_posicao/touch", json={"count": 7}
    ).json()
    assert len(touched["ids"]) == 7
    changed = walk(api, "vw_contas_receber_posicao", limit=3, updated_since=before)
    assert [row["id"] for row in changed] == touched["ids"]
    assert count(api, "vw_contas_receber_posicao", updated_since=before) == 7
    by_id = {row["id"]: row for row in everything}
    for row in changed:
        assert row["updated_at"] == touched["updated_at"]
        assert moment(row["updated_at"]) > moment(before)
        assert row["situacao"] != by_id[row["id"]]["situacao"]
        assert row["data_vencimento"] == by_id[row["id"]]["data_vencimento"]
    # Combined with a date window: the touched rows dated inside it.
    start, end = "2024-06-01", "2025-06-30"
    inside = [r["id"] for r in changed if start <= r["data_vencimento"] <= end]
    window = {"start_date": start, "end_date": end, "updated_since": before}
    assert [r["id"] for r in walk(api, "vw_contas_receber_posicao", limit=2, **window)] == inside
    assert count(api, "vw_contas_receber_posicao", **window) == len(inside)
    # Untouched views and other companies are unaffected.
    assert count(api, "vw_vendas", updated_since=before) == 0


# --- rows ---------------------------------------------------------------------------------


def test_detail_is_the_row_plus_details_that_add_up(api: httpx.Client) -> None:
    for view in VIEWS:
        row = api.get(rows_path(view), params={"limit": 5}).json()["items"][4]
        detail = api.get(f"{rows_path(view)}/{row['id']}").json()
        assert {k: v for k, v in detail.items() if k != "details"} == row
        assert isinstance(detail["details"], dict) and detail["details"]
    sale = api.get(f"{rows_path('vw_vendas')}/V000000123").json()
    items = sale["details"]["itens"]
    assert sum(Decimal(item["valor_total"]) for item in items) == Decimal(sale["valor_total"])
    assert all(
        Decimal(i["valor_unitario"]) * i["quantidade"] == Decimal(i["valor_total"]) for i in items
    )
    for missing in ("V000000301", "V000000000", "CR000000001", "123"):
        response = api.get(f"{rows_path('vw_vendas')}/{missing}")
        assert response.status_code == 404, missing
        assert missing in response.json()["detail"]


def test_same_seed_gives_the_same_rows_in_another_process(
    api: httpx.Client, emulators: Emulators
) -> None:
    with client(emulators.twin) as twin:
        for view in VIEWS:
            first = api.get(rows_path(view), params={"limit": 60}).json()
            assert first == twin.get(rows_path(view), params={"limit": 60}).json()
            params = {"after": first["next_cursor"], "limit": 60}
            assert api.get(rows_path(view), params=params).json() == (
                twin.get(rows_path(view), params=params).json()
            )
        first = api.get(rows_path("vw_estoque"), params={"limit": 1}).json()["items"][0]["id"]
        path = f"{rows_path('vw_estoque')}/{first}"
        assert api.get(path).json() == twin.get(path).json()
    with client(emulators.main, OTHER_TOKEN) as globex:
        other = globex.get(rows_path("vw_vendas", "globex"), params={"limit": 60}).json()
    mine = api.get(rows_path("vw_vendas"), params={"limit": 60}).json()
    assert [r["cliente_nome"] for r in other["items"]] != [r["cliente_nome"] for r in mine["items"]]


# --- auth and errors ----------------------------------------------------------------------


def test_tokens_read_only_their_own_company(emulators: Emulators) -> None:
    with client(emulators.main, None) as anonymous:
        response = anonymous.get(rows_path("vw_vendas"))
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert anonymous.get("/_emulator/health").json() == {"ok": True}
    with client(emulators.main, "wrong-token") as stranger:
        assert stranger.get(rows_path("vw_vendas")).status_code == 401
    with client(emulators.main, OTHER_TOKEN) as globex:
        assert globex.get(rows_path("vw_vendas", "globex")).status_code == 200
        for path in (rows_path("vw_vendas"), f"{rows_path('vw_vendas')}/count"):
            response = globex.get(path)
            assert response.status_code == 403
            assert "globex" in response.json()["detail"]
        assert globex.get(rows_path("vw_vendas", "initech")).status_code == 403


def test_unknown_view_and_bad_parameters_say_what_is_wrong(api: httpx.Client) -> None:
    response = api.get(rows_path("vw_nope"))
    assert response.status_code == 404
    assert all(view in response.json()["detail"] for view in VIEWS)
    assert api.get(f"{rows_path('vw_nope')}/count").status_code == 404
    for params, parameter, words in [
        ({"start_date": "01/02/2024"}, "start_date", "YYYY-MM-DD"),
        ({"end_date": "2024-02-30"}, "end_date", "YYYY-MM-DD"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-31"}, "end_date", "before"),
        ({"updated_since": "yesterday"}, "updated_since", "ISO-8601"),
        ({"after": "not-a-cursor"}, "after", "next_cursor"),
    ]:
        for path in (rows_path("vw_vendas"), f"{rows_path('vw_vendas')}/count"):
            if parameter == "after" and path.endswith("count"):
                continue
            response = api.get(path, params=params)
            assert response.status_code == 422, params
            assert response.json()["parameter"] == parameter
            assert words in response.json()["detail"]


# --- faults -------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_and_never_serves_over_it(
    api: httpx.Client, emulators: Emulators
) -> None:
    limit = 4
    api.put("/_emulator/faults", json={"rate_limit_per_second": limit}).raise_for_status()
    statuses: list[int] = []
    # Back to back until refused a few times (a bound, in case this machine is very slow).
    while statuses.count(429) < 3 and len(statuses) < 60:
        response = api.get(f"{rows_path('vw_vendas')}/count")
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after = int(response.headers["retry-after"])
            assert retry_after >= 1  # a whole number, never 0
            assert response.json() == {
                "error": "rate limited",
                "detail": response.json()["detail"],
                "retry_after": retry_after,
            }
    assert set(statuses) == {200, 429}
    # Another token has its own allowance.
    with client(emulators.main, OTHER_TOKEN) as globex:
        assert globex.get(f"{rows_path('vw_vendas', 'globex')}/count").status_code == 200
    time.sleep(1.0)  # one full window later the token is served again
    assert api.get(f"{rows_path('vw_vendas')}/count").status_code == 200

    stats = api.get("/_emulator/stats").json()
    assert 0 < stats["max_served_per_second"]["by_token"][TOKEN] <= limit
    mine = [entry for entry in stats["per_second"] if entry["token"] == TOKEN]
    assert all(entry["served"] <= limit for entry in mine)
    assert sum(entry["rejected"] for entry in mine) == statuses.count(429)
    assert sum(entry["count"] for entry in mine) == len(statuses) + 1
    assert stats["responses_by_kind"]["count"]["429"] == statuses.count(429)


def test_server_error_burst_then_recovery(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"server_errors": 3}).raise_for_status()
    responses = [api.get(rows_path("vw_estoque")) for _ in range(3)]
    assert [r.status_code for r in responses] == [500, 503, 500]
    assert responses[1].headers["retry-after"] == "1"
    assert all(r.json()["error"] == "server error" for r in responses)
    assert api.get("/_emulator/faults").json()["server_errors"] == 0
    assert api.get(rows_path("vw_estoque")).status_code == 200


def test_failing_view_answers_500_while_the_others_work(api: httpx.Client) -> None:
    bad = api.put("/_emulator/faults", json={"failing_views": ["vw_nope"]})
    assert bad.status_code == 422
    api.put("/_emulator/faults", json={"failing_views": ["vw_contas_pagar"]}).raise_for_status()
    for path in ("", "/count", "/CP000000001"):
        response = api.get(rows_path("vw_contas_pagar") + path)
        assert response.status_code == 500
        assert response.json()["error"] == "view failed"
    assert api.get(rows_path("vw_contas_pagas")).status_code == 200
    api.delete("/_emulator/faults").raise_for_status()
    assert api.get(rows_path("vw_contas_pagar")).status_code == 200


def test_slow_page_delays_each_listing_page(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"slow_page_seconds": 0.3}).raise_for_status()
    started = time.monotonic()
    assert api.get(rows_path("vw_vendas"), params={"limit": 5}).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_rows_changing_between_pages_still_appear_exactly_once(api: httpx.Client) -> None:
    api.put("/_emulator/faults", json={"mutate_between_pages": True}).raise_for_status()
    started = now_iso()
    rows = walk(api, "vw_vendas", limit=37)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == count(api, "vw_vendas") == ROWS
    changed = [row for row in rows if moment(row["updated_at"]) > moment(started)]
    assert len(changed) >= 8  # at least the first row of every page after the first
    assert moment(rows[37]["updated_at"]) > moment(started)
    # An incremental read from before the walk finds every changed row.
    assert count(api, "vw_vendas", updated_since=started) >= len(changed)


def test_pages_report_the_listing_total_and_dropped_rows_go_missing(api: httpx.Client) -> None:
    window = {"start_date": "2024-02-01", "end_date": "2024-03-31"}
    expected = count(api, "vw_contas_pagas", **window)
    assert 0 < expected < ROWS
    first = api.get(rows_path("vw_contas_pagas"), params={"limit": 7, **window})
    assert first.json()["total"] == expected == int(first.headers["X-Total-Count"])
    assert first.json()["count"] == 7
    api.put("/_emulator/faults", json={"drop_rows_per_page": 2}).raise_for_status()
    served, pages = 0, 0
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 7, **window}
        if after:
            params["after"] = after
        page = api.get(rows_path("vw_contas_pagas"), params=params).json()
        assert page["total"] == expected and page["count"] == len(page["items"])
        served, pages, after = served + page["count"], pages + 1, page["next_cursor"]
        if after is None:
            break
    last = expected - 7 * (pages - 1)
    assert served == expected - 2 * (pages - 1) - min(2, last)


def test_stats_count_requests_by_kind_and_status(api: httpx.Client) -> None:
    api.get(rows_path("vw_vendas"))
    api.get(f"{rows_path('vw_vendas')}/count")
    api.get(f"{rows_path('vw_vendas')}/V000000001")
    api.get(rows_path("vw_vendas"), params={"limit": 0})
    stats = api.get("/_emulator/stats").json()
    assert stats["responses_by_kind"]["list"] == {"200": 1, "422": 1}
    assert stats["requests"]["count"] == stats["requests"]["detail"] == 1
    assert sum(stats["requests"].values()) == 4
    api.post("/_emulator/reset").raise_for_status()
    assert sum(api.get("/_emulator/stats").json()["requests"].values()) == 0


# --- scale --------------------------------------------------------------------------------


def test_300k_rows_a_view_are_generated_lazily_and_page_from_the_middle(
    emulators: Emulators,
) -> None:
    # How fast it starts is a figure for a bench, not a test; its memory shows the laziness.
    # 1.8 million rows held in memory would take gigabytes; generated lazily it stays small.
    assert psutil.Process(emulators.big_process.pid).memory_info().rss < 300 * 2**20
    with client(emulators.big) as big:
        big.post("/_emulator/reset").raise_for_status()
        started = time.monotonic()
        page = big.get(rows_path("vw_vendas"), params={"after": "V000150000", "limit": 1000}).json()
        assert [row["id"] for row in page["items"][:2]] == ["V000150001", "V000150002"]
        assert page["count"] == 1000 and page["next_cursor"] == "V000151000"
        assert count(big, "vw_estoque") == BIG_ROWS
        one_day = {"start_date": "2025-02-14", "end_date": "2025-02-14"}
        day_rows = walk(big, "vw_vendas", limit=1000, **one_day)
        assert len(day_rows) == count(big, "vw_vendas", **one_day) > 300
        assert {row["data_venda"] for row in day_rows} == {"2025-02-14"}
        assert time.monotonic() - started < 10
        before = now_iso()
        touched = big.post("/_emulator/rows/acme/vw_vendas/touch", json={"count": 3}).json()
        changed = walk(big, "vw_vendas", limit=1000, updated_since=before)
        assert [row["id"] for row in changed] == touched["ids"]


def test_info_describes_the_views(api: httpx.Client) -> None:
    info = api.get("/_emulator/info").json()
    assert info["companies"] == ["acme", "globex"]
    assert info["rows_per_view"] == ROWS and info["max_page_size"] == MAX_PAGE
    assert {name: v["date_field"] for name, v in info["views"].items()} == DATE_FIELDS
    assert date.fromisoformat(info["data_start"]) == date(2024, 1, 1)
