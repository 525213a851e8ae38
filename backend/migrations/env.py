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
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations rebuild a table by copying it and dropping the original; with foreign keys on, dropping
        # `conversation` would cascade into `message`. Off for the migration (it cannot change inside a
        # transaction), checked and back on afterwards.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
