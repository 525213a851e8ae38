"""task-list snapshots on messages; feedback on replies

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:10:00

Each turn's user message keeps the task list the turn read (and its reply the list after it), so a conversation can
be replayed from its true start; a reply keeps the user's thumbs up or down.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tasks", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("feedback", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("feedback")
        batch_op.drop_column("tasks")
