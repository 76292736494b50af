"""Alembic environment: the URL comes from DATABASE_URL (or the caller's config), never the ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from core import pull_models  # noqa: F401 - its tables join Base.metadata
from core.db import is_sqlite, sync_url
from core.models import Base
from core.settings import get_settings
from sync_modules.registry import all_modules

all_modules()  # the modules' record tables join Base.metadata when their files load

config = context.config
database_url = config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=sync_url(database_url), target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=is_sqlite(database_url),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
