"""The Dockerfile parsed into stages and instructions, and the code the runtime imports."""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# Entry points of the image: the worker, the API factory, the migrations.
ENTRY_FILES = ["worker.py", "api/main.py", "core/migrate.py", "migrations/env.py"]
DEV_ONLY = {"emulators", "devstack", "tests", "bench"}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and parser directives dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return out


def global_args(items: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for item in items:
        if item.keyword == "FROM":
            break
        if item.keyword == "ARG":
            name, _, default = item.args.partition("=")
            args[name] = default
    return args


def stages(text: str | None = None) -> list[Stage]:
    items = instructions(DOCKERFILE.read_text() if text is None else text)
    args = global_args(items)
    result: list[Stage] = []
    for item in items:
        if item.keyword == "FROM":
            parts = item.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base, name))
        elif result:
            result[-1].instructions.append(item)
    return result


def copy_sources(item: Instruction) -> tuple[list[str], str, str | None]:
    """(sources, destination, --from stage) of a COPY."""
    words = shlex.split(item.args)
    options = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    source_stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
    return paths[:-1], paths[-1], source_stage


def copied_paths(stage: Stage) -> set[str]:
    """Top-level repository paths a stage copies from the build context."""
    found: set[str] = set()
    for item in stage.all("COPY"):
        sources, _, from_stage = copy_sources(item)
        if from_stage is None:
            found.update(s.rstrip("/").split("/")[0] for s in sources)
    return found


def _local_top_levels() -> dict[str, list[Path]]:
    """Top-level importable names of the repository -> the files that define them."""
    names: dict[str, list[Path]] = {}
    for path in ROOT.iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            names[path.name] = sorted(path.rglob("*.py"))
        elif path.suffix == ".py":
            names[path.stem] = [path]
    return names


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def runtime_top_levels() -> set[str]:
    """Local packages/modules the entry points import, transitively (whole packages)."""
    local = _local_top_levels()
    needed: set[str] = set()
    todo = [ROOT / f for f in ENTRY_FILES]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_top_levels(path) & local.keys():
            if name not in needed:
                needed.add(name)
                todo.extend(local[name])
    return needed


def by_name_copied_top_levels() -> set[str]:
    """Top-level names the image installs (the builder's COPYs, `.py` dropped)."""
    builder = next(s for s in stages() if s.name == "builder")
    return {p.removesuffix(".py") for p in copied_paths(builder)}
