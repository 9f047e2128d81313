"""library: what secret parameters replaced in a draft's script.

Revision ID: library_0005
Revises: library_0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "library_0005"
down_revision: str | None = "library_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # [{parameter, kind, line}]: never the secret itself.
    op.add_column(
        "draft_templates",
        sa.Column("redactions", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema="library",
    )


def downgrade() -> None:
    op.drop_column("draft_templates", "redactions", schema="library")
