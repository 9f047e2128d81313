"""library: who sent a draft's request id and what it asked.

Revision ID: library_0003
Revises: library_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "library_0003"
down_revision: str | None = "library_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "draft_templates", sa.Column("request_fingerprint", sa.String(64), nullable=True), schema="library"
    )


def downgrade() -> None:
    op.drop_column("draft_templates", "request_fingerprint", schema="library")
