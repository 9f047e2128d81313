"""sessions: an index for listing dead letters, newest first.

Revision ID: sessions_0007
Revises: sessions_0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sessions_0007"
down_revision: str | None = "sessions_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "outbox_dead_letters",
        "outbox",
        ["account_id", sa.text("dead_at DESC"), sa.text("id DESC")],
        unique=False,
        schema="sessions",
        postgresql_where=sa.text("dead_at IS NOT NULL AND delivered_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("outbox_dead_letters", table_name="outbox", schema="sessions")
