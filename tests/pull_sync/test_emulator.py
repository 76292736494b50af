"""The pull-client emulator over HTTP: identities, paging, acknowledge, and each fault switch."""

from __future__ import annotations

import httpx
import pytest

from tests.emulators.support import wait_for


def make(control: httpx.Client, client_id: str, records: int) -> str:
    response = control.post(
        "/_emulator/clients",
        json={"client_id": client_id, "user_id": f"u-{client_id}", "records": records},
    )
    assert response.status_code == 201, response.text
    return f"/c/{client_id}/api/client"


def faults(control: httpx.Client, client_id: str, **switches: object) -> None:
    control.put(f"/_emulator/clients/{client_id}/faults", json=switches).raise_for_status()


def test_default_identity_speaks_the_seed_paths(control: httpx.Client) -> None:
    health = control.get("/api/client/health").json()
    assert health["status"] == "ok" and health["client_id"] == "default"
    added = control.post(
        "/api/client/add-capture",
        json={"pokemon_id": 1, "pokemon_name": "bulbasaur", "action": "capture", "removed": False},
    )
    assert added.status_code == 201
    record = added.json()["record"]
    assert record["payload"] == {"pokemon_id": 1, "pokemon_name": "bulbasaur"}
    data = control.get("/api/client/sync-data").json()
    assert [r["id"] for r in data["records"]] == [record["id"]]


def test_pages_then_acknowledge_removes_from_pending(control: httpx.Client) -> None:
    base = make(control, "a", 5)
    page = control.get(f"{base}/sync-data", params={"limit": 2}).json()
    assert page["count"] == 2 and page["pending"] == 5 and page["has_more"] is True
    ids = [r["id"] for r in page["records"]]
    ack = control.post(f"{base}/acknowledge", json={"ids": [*ids, "nope"]}).json()
    assert ack == {"acknowledged": ids, "unknown": ["nope"]}
    rest = control.get(f"{base}/sync-data", params={"limit": 10}).json()
    assert [r["id"] for r in rest["records"]] == ["a-000003", "a-000004", "a-000005"]
    assert rest["has_more"] is False
    assert control.get(f"{base}/stats").json()["synced"] == 2


def test_since_keeps_later_records(control: httpx.Client) -> None:
    base = make(control, "s", 3)
    records = control.get(f"{base}/sync-data").json()["records"]
    later = control.get(f"{base}/sync-data", params={"since": records[0]["timestamp"]}).json()
    assert [r["id"] for r in later["records"]] == [r["id"] for r in records[1:]]


def test_populate_many_identities(control: httpx.Client) -> None:
    totals = control.post("/_emulator/populate", json={"clients": 50, "records": 3}).json()
    assert totals["clients"] == 51 and totals["pending"] == 150
    assert control.get("/c/c49/api/client/health").json()["user_id"] == "user-49"
    assert control.get("/c/c50/api/client/health").status_code == 404


@pytest.mark.parametrize(
    ("switch", "status"),
    [("down", 503), ("server_error", 500)],
)
def test_failing_answers(control: httpx.Client, switch: str, status: int) -> None:
    base = make(control, "f", 1)
    faults(control, "f", **{switch: True})
    assert control.get(f"{base}/sync-data").status_code == status


def test_hostile_bodies(control: httpx.Client) -> None:
    base = make(control, "h", 3)
    faults(control, "h", malformed_json=True)
    with pytest.raises(ValueError):
        control.get(f"{base}/sync-data").json()
    faults(control, "h", wrong_types=True)
    assert isinstance(control.get(f"{base}/sync-data").json()["records"][0]["id"], int)
    faults(control, "h", missing_ids=True)
    assert all("id" not in r for r in control.get(f"{base}/sync-data").json()["records"])
    faults(control, "h", huge_body=True)
    assert len(control.get(f"{base}/sync-data").content) > 2 * 1024 * 1024
    faults(control, "h", ignore_limit=True)
    assert control.get(f"{base}/sync-data", params={"limit": 1}).json()["count"] == 3


def test_acknowledge_faults(control: httpx.Client) -> None:
    base = make(control, "k", 2)
    ids = [r["id"] for r in control.get(f"{base}/sync-data").json()["records"]]
    faults(control, "k", ack_fails=True)
    assert control.post(f"{base}/acknowledge", json={"ids": ids}).status_code == 500
    assert control.get(f"{base}/stats").json()["pending"] == 2
    faults(control, "k", ack_lies=True)
    assert control.post(f"{base}/acknowledge", json={"ids": ids[:1]}).status_code == 500
    assert control.get(f"{base}/stats").json()["pending"] == 1
    faults(control, "k", ack_unknown_ids=True)
    answer = control.post(f"{base}/acknowledge", json={"ids": ids[1:]}).json()
    assert answer["acknowledged"] == [ids[1], "k-never-sent"]


def test_fail_next_is_spent(control: httpx.Client) -> None:
    base = make(control, "n", 1)
    faults(control, "n", fail_next=2)
    assert [control.get(f"{base}/health").status_code for _ in range(3)] == [500, 500, 200]


def test_a_held_acknowledge_whose_caller_left_marks_nothing(control: httpx.Client) -> None:
    base = make(control, "w", 2)
    ids = [r["id"] for r in control.get(f"{base}/sync-data").json()["records"]]
    faults(control, "w", slow_acknowledge=True)
    with pytest.raises(httpx.ReadTimeout):  # the caller gives up (or dies) during the hold
        control.post(f"{base}/acknowledge", json={"ids": ids}, timeout=1.0)
    stats = wait_for(
        lambda: control.get(f"{base}/stats").json(),
        lambda s: s["requests"].get("acknowledge_abandoned") == 1,
        timeout=15,
        what="the held acknowledge to end",
    )
    assert stats["pending"] == 2
    # A caller that waits is acknowledged once the hold is over.
    answer = control.post(f"{base}/acknowledge", json={"ids": ids}, timeout=30).json()
    assert answer["acknowledged"] == ids
    assert control.get(f"{base}/stats").json()["pending"] == 0
