"""`free_port` hands out ports no client socket and no other xdist worker can take first.

The last CI run failed on "address already in use": the port came from binding to 0, i.e. from
the kernel's ephemeral range, which every outgoing connection on the machine draws from too.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import free_port


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert max(ports) < ephemeral_low()
    assert min(ports) >= 10_000


def test_a_port_given_out_can_be_listened_on() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_xdist_workers_draw_from_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        ports = {free_port() for _ in range(50)}
        slices.append((min(ports), max(ports)))
    slices.sort()
    assert all(a[1] < b[0] for a, b in itertools.pairwise(slices))


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        # Only the taken port and one other in range: the taken one must be passed over.
        monkeypatch.setattr(processes, "_listen_range", lambda: (port, port + 1))
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        processes._HANDED.discard(port + 1)
        assert free_port() == port + 1
