"""library: the display name of a template's or draft's source user, beside its id.

Revision ID: library_0006
Revises: library_0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "library_0006"
down_revision: str | None = "library_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("script_templates", "draft_templates")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("source_user_name", sa.String(200), nullable=True), schema="library")


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "source_user_name", schema="library")
