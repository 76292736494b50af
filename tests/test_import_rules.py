"""The dependency rules of shared/DESIGN.md, checked: workflows import contracts only, core/
imports nothing above it, and the jobs routes don't drag the media activities in.

Each import is checked in a fresh interpreter: in this one, other tests have loaded everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_MODULES = sorted(
    f"workflows.{path.stem}"
    for path in (ROOT / "workflows").glob("*.py")
    if path.stem != "__init__"
)
# I/O libraries and the packages that use them: none belongs in the workflow sandbox.
IO_PACKAGES = ("httpx", "sqlalchemy", "PIL", "boto3", "storage", "providers", "activities")


def loaded_by(module: str) -> set[str]:
    """Every module in sys.modules after importing `module` in a new interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    names: list[str] = json.loads(done.stdout.splitlines()[-1])
    return set(names)


def under(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in packages)


def test_every_workflow_module_is_checked() -> None:
    assert {"workflows.media_job", "workflows.sync_run"} <= set(WORKFLOW_MODULES)


@pytest.mark.parametrize("module", WORKFLOW_MODULES)
def test_a_workflow_module_loads_no_io_code(module: str) -> None:
    assert under(loaded_by(module), IO_PACKAGES) == []


def test_the_check_sees_io_code_when_it_is_loaded() -> None:
    # The worker imports the activities: the same check must catch them there.
    found = under(loaded_by("worker"), IO_PACKAGES)
    assert {"PIL", "activities.media", "httpx", "sqlalchemy", "storage.copy"} <= set(found)


def test_the_sync_workflow_does_not_load_the_media_workflow() -> None:
    assert "workflows.media_job" not in loaded_by("workflows.sync_run")


def test_the_jobs_routes_load_neither_pillow_nor_activities() -> None:
    assert under(loaded_by("api.routes.jobs"), ("PIL", "activities")) == []


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, wherever in the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from workflows import media_job` names the package only
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_core_imports_neither_workflows_nor_api() -> None:
    files = sorted((ROOT / "core").rglob("*.py"))
    assert files
    upward = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in ("workflows", "api")
        )
        for path in files
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_static_check_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from core.contracts import JobKind\n"
        "def later():\n"
        "    from workflows import media_job\n"
        "    import api.routes.jobs\n"
    )
    names = imported_modules(sample)
    assert {"workflows", "workflows.media_job", "api.routes.jobs", "core.contracts"} <= names


def test_the_app_imports_neither_the_benches_nor_dbos() -> None:
    # bench/peers/ (and the dbos package of the dev extra) serve bench/peers.py only.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    assert "api" in packages and "bench" not in packages
    files = [ROOT / "worker.py", *(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))]
    bench_imports = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in ("bench", "dbos")
        )
        for path in files
    }
    assert {path: names for path, names in bench_imports.items() if names} == {}


# The worker runs workflows outside Temporal's sandbox by default (WORKER_SANDBOXED): what the
# sandbox would refuse at run time, on the paths a run happens to take, is refused here on every
# path, in the workflow modules and in the contract modules they pass through (the sandbox never
# checked those). The workflow tests (tests/workflows) still run in the sandbox.
NONDETERMINISTIC_MODULES = (
    "time", "random", "uuid", "secrets", "os", "threading", "concurrent", "socket",
    "subprocess", "multiprocessing",
)  # fmt: skip
NONDETERMINISTIC_CALLS = ("now", "utcnow", "today", "fromtimestamp", "getpid")


def workflow_code() -> list[Path]:
    """The workflow modules and every module of ours they import, transitively."""
    seen: dict[str, Path] = {}
    pending = [ROOT / "workflows" / f"{m.split('.')[1]}.py" for m in WORKFLOW_MODULES]
    while pending:
        path = pending.pop()
        if str(path) in seen:
            continue
        seen[str(path)] = path
        for name in imported_modules(path):
            candidate = ROOT / f"{name.replace('.', '/')}.py"
            if name.split(".")[0] in ("core", "workflows") and candidate.exists():
                pending.append(candidate)
    return sorted(seen.values())


def nondeterminism(path: Path) -> list[str]:
    found: list[str] = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for name in imported_modules(path):
        if name.split(".")[0] in NONDETERMINISTIC_MODULES:
            found.append(f"imports {name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in NONDETERMINISTIC_CALLS
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "workflow")
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}()")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            found.append(f"line {node.lineno}: open()")
    return found


def test_workflow_code_reads_no_clock_randomness_or_os() -> None:
    files = workflow_code()
    assert ROOT / "core" / "contracts.py" in files and ROOT / "workflows" / "policies.py" in files
    found = {str(p.relative_to(ROOT)): nondeterminism(p) for p in files}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_the_determinism_check_sees_a_clock_and_a_random_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import random\n"
        "from datetime import datetime\n"
        "def run():\n"
        "    started = datetime.now()\n"
        "    again = workflow.now()\n"
        "    return open('x'), started, again\n"
    )
    assert nondeterminism(sample) == ["imports random", "line 4: .now()", "line 6: open()"]
