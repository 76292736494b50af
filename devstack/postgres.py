"""A private, throwaway PostgreSQL for tests and benches.

Tests must not depend on (or damage) a system cluster, and parallel runs must not share
databases, so each `PostgresServer` runs its own cluster in a temp dir on a free port and
hands out fresh databases. Durability is switched off (fsync, full-page writes) because the
data dies with the run anyway and it makes schema-heavy tests several times faster.

When `AUTOSYNC_TEST_PG_URL` is set (a libpq URL to a server where we may CREATE DATABASE),
nothing is started: databases are created on that server and dropped again on `stop()`.
That is the escape hatch for machines where PostgreSQL cannot be installed locally.

PostgreSQL refuses to run as root, so as root `initdb` and the server run as the `postgres`
OS user, which owns the temp dir.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from devstack.processes import ManagedProcess, free_port

ENV_URL = "AUTOSYNC_TEST_PG_URL"
PG_USER = "postgres"
NOT_INSTALLED = "PostgreSQL is not installed: .ci/run installs it with apt-get"

# Plain identifiers only: they need no quoting in SQL or in the URL path, so the URL the app
# gets back is exactly the database we created.
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL can't be started here (binaries or the `postgres` OS user are missing)."""


def _has_server_binaries(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: compare versions numerically (15 > 9.6).
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (-1,)


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`, or None when the server isn't installed.

    `pg_config` comes first because it names the build the user chose, but on Debian it
    also ships with libpq-dev alone, so its answer only counts if the server binaries are
    really there; otherwise the highest `/usr/lib/postgresql/*/bin` wins.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server_binaries(Path(out)):
            return Path(out)
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(p)]
    if not candidates:
        return None
    return max(candidates, key=_version_key)


def _normalize_scheme(url: str) -> str:
    """`postgresql+psycopg://…` or `postgres://…` → `postgresql://…` (libpq and the app read it)."""
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"{ENV_URL}={url!r}: expected a postgresql:// URL")
    return urlunsplit(parts._replace(scheme="postgresql"))


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name, safe="")))


class PostgresServer:
    """A private PostgreSQL cluster (or the server in `AUTOSYNC_TEST_PG_URL`) as a context manager.

    >>> with PostgresServer() as pg:
    ...     url = pg.create_database()   # postgresql://postgres@127.0.0.1:<port>/autosync_…
    """

    def __init__(self, *, log_dir: Path | None = None, startup_timeout: float = 60.0) -> None:
        """`log_dir` keeps the server log after `stop()` (default: inside the temp dir)."""
        self._log_dir = log_dir
        self._startup_timeout = startup_timeout
        self._external_url: str | None = None
        self._temp_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._port: int | None = None
        self._created: list[str] = []

    # -- discovery ---------------------------------------------------------------------------

    @staticmethod
    def available() -> bool:
        """Whether a server can be had: `AUTOSYNC_TEST_PG_URL` is set or the binaries exist."""
        return bool(os.environ.get(ENV_URL)) or find_bindir() is not None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        if self._external_url is not None or self._process is not None:
            return self
        env_url = os.environ.get(ENV_URL)
        if env_url:
            url = _normalize_scheme(env_url)
            with psycopg.connect(url, connect_timeout=10):
                pass  # fail here, with the server's own message, rather than in a test
            self._external_url = url
        else:
            try:
                self._start_private()
            except BaseException:
                self.stop()
                raise
        atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and delete its files (or drop the databases made on an external one).

        The server gets SIGINT (PostgreSQL's "fast" shutdown) first: SIGTERM, which
        `ManagedProcess.stop` sends, would wait for every client, and test engines often
        still hold pooled connections. Whatever survives is killed by its process group.
        """
        atexit.unregister(self.stop)
        if self._external_url is not None:
            self._drop_created()
            self._external_url = None
        process, self._process = self._process, None
        if process is not None and process.proc is not None:
            if process.alive():
                try:
                    os.kill(process.pid, signal.SIGINT)
                    process.proc.wait(timeout=timeout)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            process.stop(timeout=timeout)
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        self._created.clear()
        self._port = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def external(self) -> bool:
        """True when the server is the one in `AUTOSYNC_TEST_PG_URL` (nothing was started)."""
        return self._external_url is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, or None for an external server."""
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int:
        if self._port is None:
            if self._external_url is not None:
                return urlsplit(self._external_url).port or 5432
            raise RuntimeError("PostgresServer is not running")
        return self._port

    @property
    def temp_dir(self) -> Path | None:
        """The cluster's temp dir (data, socket, default log); None for an external server."""
        return self._temp_dir

    @property
    def admin_url(self) -> str:
        """URL of the maintenance database (`postgres`), for CREATE/DROP DATABASE."""
        if self._external_url is not None:
            return self._external_url
        if self._port is None:
            raise RuntimeError("PostgresServer is not running")
        return f"postgresql://{PG_USER}@127.0.0.1:{self._port}/postgres"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL (`postgresql://…`, no driver suffix).

        Without a name one is made up, so tests never collide with each other or with
        databases left on an external server by an earlier run.
        """
        name = name or f"autosync_{uuid.uuid4().hex[:12]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        # CREATE DATABASE can't run inside a transaction block, hence autocommit.
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return _with_database(self.admin_url, name)

    # -- internals ---------------------------------------------------------------------------

    def _start_private(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailableError(NOT_INSTALLED)
        as_root = os.geteuid() == 0
        if as_root:
            try:
                pg_user = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PostgresUnavailableError(
                    f"running as root, but there is no {PG_USER!r} OS user to run PostgreSQL as "
                    "(PostgreSQL refuses root); the Debian postgresql package creates it"
                ) from None

        self._temp_dir = Path(tempfile.mkdtemp(prefix="autosync-pg-"))
        if as_root:
            os.chown(self._temp_dir, pg_user.pw_uid, pg_user.pw_gid)
        data_dir = self._temp_dir / "data"
        log_dir = self._log_dir or self._temp_dir

        initdb = [
            str(bindir / "initdb"),
            "-D", str(data_dir),
            "-U", PG_USER,
            "-E", "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=trust",
            "--no-sync",
        ]  # fmt: skip
        if as_root:
            initdb = ["runuser", "-u", PG_USER, "--", *initdb]
        result = subprocess.run(
            initdb, cwd=self._temp_dir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            hint = ""
            if as_root and "Permission denied" in result.stderr:
                hint = (
                    f"\n(the {PG_USER!r} user must be able to reach the temp dir: point TMPDIR "
                    "at a world-traversable directory such as /tmp)"
                )
            raise RuntimeError(
                f"initdb failed ({result.returncode}) in {self._temp_dir}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}{hint}"
            )

        # A free port can be taken between free_port() and the server's bind: retry then.
        for attempt in range(3):
            port = free_port()
            server = [
                str(bindir / "postgres"),
                "-D", str(data_dir),
                "-p", str(port),
                "-k", str(self._temp_dir),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=300",
            ]  # fmt: skip
            if as_root:
                # setpriv execs (runuser forks and waits), so the PID we hold is the
                # postmaster itself: SIGINT reaches it directly and nothing is orphaned.
                server = [
                    "setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups",
                    "--", *server,
                ]  # fmt: skip
            process = ManagedProcess(
                f"postgres-{port}", server, log_dir=log_dir, cwd=self._temp_dir
            ).start()
            self._process, self._port = process, port
            try:
                self._wait_ready(process, port)
                return
            except RuntimeError:
                if attempt < 2 and "already in use" in process.log_tail():
                    process.stop()
                    self._process = self._port = None
                    continue
                raise

    def _wait_ready(self, process: ManagedProcess, port: int) -> None:
        """Wait for a real connection: the port opens before recovery/startup is finished."""
        deadline = time.monotonic() + self._startup_timeout
        conninfo = f"host=127.0.0.1 port={port} user={PG_USER} dbname=postgres connect_timeout=2"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"postgres exited early:\n{process.log_tail()}")
            try:
                with psycopg.connect(conninfo):
                    return
            except psycopg.OperationalError as err:
                last_error = err
                time.sleep(0.05)
        raise TimeoutError(
            f"postgres not ready on port {port} after {self._startup_timeout}s "
            f"({last_error}):\n{process.log_tail()}"
        )

    def _drop_created(self) -> None:
        """Best effort: a database we can't drop must not hide the test's own failure."""
        if not self._created or self._external_url is None:
            return
        try:
            with psycopg.connect(self._external_url, autocommit=True, connect_timeout=10) as conn:
                for name in self._created:
                    ident = sql.Identifier(name)
                    try:  # WITH (FORCE) (PostgreSQL 13+) ends connections still in the pool.
                        conn.execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
                        )
                    except psycopg.errors.SyntaxError:
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
        except psycopg.Error as err:
            warnings.warn(
                f"could not drop test databases {self._created} on {ENV_URL}: {err}",
                stacklevel=2,
            )
