"""Alembic on a populated database: upgrading from the first revision keeps every row, a downgrade/upgrade round trip
lands on the same schema, and the models match the migrations (what `alembic check` asserts).

Each test gets a database of its own (a SQLite file, or a throwaway database on the PostgreSQL server named by
TEST_DATABASE_URL), because migrating down drops tables that other tests' harnesses rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, col

from backend import crud, db
from backend.models import Message
from tests.conftest import PG_URL

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database no other test touches."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: TEST_DATABASE_URL is not set")
    server = make_url(db.normalise_url(PG_URL))
    name = f"todo_agent_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(server.set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def revisions(engine: Engine) -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(db.alembic_config(engine))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_diff(engine: Engine) -> list[Any]:
    """What `alembic revision --autogenerate` would write: empty when the models match the migrated database."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def populate_first_revision(engine: Engine) -> dict[str, list[int]]:
    """Rows written against the *first* revision's tables (that schema is fixed forever), with plain SQL.

    Not through the models: they describe head, which may have columns the first revision lacks.
    """
    task = sa.table(
        "task",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.String),
        sa.column("title", sa.String),
        sa.column("description", sa.String),
        sa.column("completed", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    conversation = sa.table(
        "conversation",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.String),
        sa.column("title", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    message = sa.table(
        "message",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.String),
        sa.column("conversation_id", sa.Integer),
        sa.column("role", sa.String),
        sa.column("content", sa.Text),
        sa.column("tool_calls", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    ids: dict[str, list[int]] = {"task": [], "conversation": [], "message": []}
    with engine.begin() as connection:
        for user in ("alice", "bob"):
            for index in range(3):
                row = connection.execute(
                    sa.insert(task)
                    .values(
                        user_id=user,
                        title=f"{user} task {index} — ünïcode",
                        description=None if index == 0 else "x" * 1000,
                        completed=index == 2,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                    .returning(task.c.id)
                ).scalar_one()
                ids["task"].append(row)
            conv = connection.execute(
                sa.insert(conversation)
                .values(user_id=user, title=f"{user}'s chat", created_at=NOW, updated_at=NOW)
                .returning(conversation.c.id)
            ).scalar_one()
            ids["conversation"].append(conv)
            for index in range(4):
                role = "user" if index % 2 == 0 else "assistant"
                calls = (
                    [{"name": "add_task", "arguments": {"title": "t"}, "result": {"task_id": 1, "status": "created"}}]
                    if role == "assistant"
                    else None
                )
                row = connection.execute(
                    sa.insert(message)
                    .values(
                        user_id=user,
                        conversation_id=conv,
                        role=role,
                        content=f"{user} message {index} " + "y" * 3900,
                        tool_calls=calls,
                        created_at=NOW,
                    )
                    .returning(message.c.id)
                ).scalar_one()
                ids["message"].append(row)
    return ids


def assert_rows_intact(engine: Engine, ids: dict[str, list[int]]) -> None:
    """Read the populated rows back through head's models and data functions, as the app will."""
    with Session(engine) as session:
        for user in ("alice", "bob"):
            tasks = crud.list_tasks(session, user_id=user)
            assert [t.title for t in tasks] == [f"{user} task {i} — ünïcode" for i in range(3)]
            assert [t.completed for t in tasks] == [False, False, True]
            assert [t.description for t in tasks] == [None, "x" * 1000, "x" * 1000]
            conversations = crud.list_conversations(session, user_id=user)
            assert [c.title for c in conversations] == [f"{user}'s chat"]
            assert conversations[0].id is not None
            messages = crud.list_messages(session, conversation_id=conversations[0].id)
            assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
            assert [m.content for m in messages] == [f"{user} message {i} " + "y" * 3900 for i in range(4)]
            assert messages[1].tool_calls == [
                {"name": "add_task", "arguments": {"title": "t"}, "result": {"task_id": 1, "status": "created"}}
            ]
            assert all(m.user_id == user for m in messages)
        task_ids = [t.id for user in ("alice", "bob") for t in crud.list_tasks(session, user_id=user)]
        assert task_ids == ids["task"]
        message_ids = session.execute(sa.select(col(Message.id)).order_by(col(Message.id))).scalars().all()
        assert list(message_ids) == sorted(ids["message"])


def test_upgrading_a_populated_database_from_the_first_revision_keeps_every_row(fresh_engine: Engine) -> None:
    chain = revisions(fresh_engine)
    assert chain, "no migrations found"
    db.upgrade(fresh_engine, chain[0])
    assert current_revision(fresh_engine) == chain[0]
    ids = populate_first_revision(fresh_engine)
    # One revision at a time, checking the rows after each step (a later revision may move or rewrite data): by
    # plain SQL, since head's models may name columns a middle revision does not have yet.
    for revision in chain[1:]:
        db.upgrade(fresh_engine, revision)
        with fresh_engine.connect() as connection:
            for table, expected in ids.items():
                found = connection.execute(sa.text(f"SELECT id FROM {table} ORDER BY id")).scalars().all()
                assert list(found) == sorted(expected), (revision, table)
    db.upgrade(fresh_engine)  # "head": what the app runs at start
    assert current_revision(fresh_engine) == chain[-1]
    assert_rows_intact(fresh_engine, ids)
    # And a second upgrade at start (every worker runs it) is a no-op.
    db.upgrade(fresh_engine)
    assert_rows_intact(fresh_engine, ids)


def test_downgrade_and_upgrade_round_trip(fresh_engine: Engine) -> None:
    chain = revisions(fresh_engine)
    db.upgrade(fresh_engine)
    head_tables = set(inspect(fresh_engine).get_table_names())
    assert {"task", "conversation", "message", "alembic_version"} <= head_tables

    # Step down one revision at a time to the first, then back up: data written at the first revision survives.
    db.upgrade(fresh_engine)
    for target in reversed(chain[:-1]):
        command.downgrade(db.alembic_config(fresh_engine), target)
        assert current_revision(fresh_engine) == target
    ids = populate_first_revision(fresh_engine) if len(chain) > 1 else None
    db.upgrade(fresh_engine)
    if ids is not None:
        assert_rows_intact(fresh_engine, ids)

    # All the way down: only Alembic's own table is left; then all the way up again to the same schema.
    command.downgrade(db.alembic_config(fresh_engine), "base")
    fresh_engine.dispose()
    assert current_revision(fresh_engine) is None
    assert set(inspect(fresh_engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(fresh_engine)
    fresh_engine.dispose()
    assert set(inspect(fresh_engine).get_table_names()) == head_tables
    assert schema_diff(fresh_engine) == []


def test_models_match_the_migrations(fresh_engine: Engine) -> None:
    """`alembic check`: autogenerate against a database at head finds nothing to write."""
    db.upgrade(fresh_engine)
    assert schema_diff(fresh_engine) == [], "models and migrations differ: write a migration"


def _upgrade_in_a_process(url: str) -> None:
    from backend import db as backend_db
    from backend.settings import Settings

    engine = backend_db.build_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    backend_db.upgrade(engine)
    engine.dispose()


def test_workers_migrating_at_the_same_moment_all_succeed(database_url: str) -> None:
    """Every uvicorn worker runs the migrations in its lifespan; four at once must not trip over each other."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_upgrade_in_a_process, args=(database_url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
