"""walks: the random request id of a walk's escalation.

Revision ID: walks_0003
Revises: walks_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "walks_0003"
down_revision: str | None = "walks_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "l1_walk_sessions", sa.Column("escalation_request_id", sa.UUID(), nullable=True), schema="walks"
    )


def downgrade() -> None:
    op.drop_column("l1_walk_sessions", "escalation_request_id", schema="walks")
