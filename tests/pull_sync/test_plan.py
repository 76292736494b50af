"""How a cycle splits its clients into batches (`plan_batches`): every client once and in order,
no batch over the size, even sizes, and whole rounds of lanes once there is more than one."""

from __future__ import annotations

import pytest

from activities.pull_sync import plan_batches


@pytest.mark.parametrize(
    ("clients", "max_size", "lanes", "sizes"),
    [
        (1000, 250, 4, [250] * 4),
        # Ten batches of 100 in four lanes left a last round of two: twelve of ~84 instead.
        (1000, 100, 4, [84] * 4 + [83] * 8),
        (1100, 250, 4, [138] * 4 + [137] * 4),
        # One round or less: as few batches as the size allows (each pulls its clients at once).
        (300, 250, 4, [150, 150]),
        (3, 250, 4, [3]),
        (3, 2, 4, [2, 1]),
        (0, 250, 4, []),
    ],
)
def test_batches_are_even_whole_rounds_and_keep_every_client_once_in_order(
    clients: int, max_size: int, lanes: int, sizes: list[int]
) -> None:
    ids = [f"pc-{n:04d}" for n in range(clients)]
    batches = plan_batches(ids, max_size, lanes)
    assert [len(b) for b in batches] == sizes
    assert [c for b in batches for c in b] == ids
    assert all(len(b) <= max_size for b in batches)
