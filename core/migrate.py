"""Bring the app DB to the newest schema: `python -m core.migrate` (the stack runs it first)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import get_settings


def project_root() -> Path:
    """Where alembic.ini and migrations/ are: the source tree, or the working directory.

    An installed (non-editable) `core` lives in site-packages, away from the migrations: the
    image keeps them in its working directory, /app.
    """
    source = Path(__file__).resolve().parent.parent
    return source if (source / "alembic.ini").is_file() else Path.cwd()


ROOT = project_root()


def upgrade(database_url: str | None = None) -> None:
    if not (ROOT / "alembic.ini").is_file():
        raise RuntimeError(f"alembic.ini and migrations/ not found in {ROOT}: run from the project")
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url or get_settings().database_url
    command.upgrade(config, "head")


if __name__ == "__main__":
    upgrade()
