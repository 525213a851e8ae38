"""lease tokens; ids never reused

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:30:00

A turn's lease gets a holder token, so only the turn that took it can release it. On SQLite the tables become
AUTOINCREMENT (rebuilt with their rows, ids kept), so the id of a deleted row is never handed out again; PostgreSQL's
sequences already never go back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("conversation", "message", "task")


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("turn_lease_token", sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            # Rebuilt with every row copied as it is; the env turns foreign keys off while it runs, so dropping the
            # old conversation table cannot cascade into the messages.
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": False}):
                pass
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("turn_lease_token")
