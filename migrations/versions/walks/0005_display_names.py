"""walks: display names beside the user ids recorded (creators, reviewers).

Revision ID: walks_0005
Revises: walks_0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "walks_0005"
down_revision: str | None = "walks_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("flows", "created_by_name"),
    ("flow_proposals", "created_by_name"),
    ("flow_proposals", "reviewer_name"),
    ("l1_walk_sessions", "created_by_name"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, sa.Column(column, sa.String(200), nullable=True), schema="walks")


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_column(table, column, schema="walks")
