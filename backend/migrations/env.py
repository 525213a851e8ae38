"""Alembic environment: the engine comes from the caller (`backend.db.upgrade`), so one code path serves the app
start, `todo-agent db upgrade` and the tests, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
engine: Engine | None = config.attributes.get("engine")
if engine is None:  # plain `alembic` CLI use
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///data/todo.db")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
