"""sessions: who sent a request id and what it asked; outbox dead letters.

Revision ID: sessions_0005
Revises: sessions_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sessions_0005"
down_revision: str | None = "sessions_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ai_sessions", sa.Column("request_fingerprint", sa.String(64), nullable=True), schema="sessions"
    )
    op.add_column(
        "outbox", sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True), schema="sessions"
    )


def downgrade() -> None:
    op.drop_column("outbox", "dead_at", schema="sessions")
    op.drop_column("ai_sessions", "request_fingerprint", schema="sessions")
