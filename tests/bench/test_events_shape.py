"""How bench/events.py spreads its subscribers over API processes and transports."""

from __future__ import annotations

from collections import Counter

from bench.events import Shape, assign


def test_the_scale_run_puts_half_of_each_api_on_sse() -> None:
    shape = Shape.scale()
    plan = assign(shape.subscribers, shape.apis, shape.sse_share)
    assert len(plan) == 2000
    assert Counter(plan) == {("ws", 0): 500, ("sse", 0): 500, ("ws", 1): 500, ("sse", 1): 500}


def test_the_default_run_is_websocket_only_on_one_api() -> None:
    shape = Shape()
    assert set(assign(shape.subscribers, shape.apis, shape.sse_share)) == {("ws", 0)}


def test_an_uneven_share_is_spread_not_bunched() -> None:
    plan = assign(9, 1, 1 / 3)
    assert [t for t, _ in plan] == ["ws", "ws", "sse"] * 3
