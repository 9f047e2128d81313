"""sessions: the copilot's grounding: full-text search over sessions (title,
problem, resolution summary) for similar resolved ones, and the citations a
reply stores (the account's sessions and library templates it was given).

Revision ID: sessions_0014
Revises: sessions_0013
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "sessions_0014"
down_revision: str | None = "sessions_0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = (
    "to_tsvector('english'::regconfig, "
    "title::text || ' ' || problem || ' ' || coalesce(resolution_summary, ''))"
)


def upgrade() -> None:
    # An expression index, not a stored column: every read of a session would
    # carry the tsvector otherwise. Not led by account_id (a GIN index cannot
    # be without btree_gin); row-level security scopes every match.
    op.create_index(
        "ai_sessions_search",
        "ai_sessions",
        [sa.literal_column(f"({SEARCH})")],
        unique=False,
        schema="sessions",
        postgresql_using="gin",
    )
    op.add_column(
        "session_messages",
        sa.Column("citations", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        schema="sessions",
    )
    op.create_check_constraint(
        "session_messages_citations_is_array",
        "session_messages",
        "jsonb_typeof(citations) = 'array'",
        schema="sessions",
    )


def downgrade() -> None:
    op.drop_constraint("session_messages_citations_is_array", "session_messages", schema="sessions")
    op.drop_column("session_messages", "citations", schema="sessions")
    op.drop_index("ai_sessions_search", table_name="ai_sessions", schema="sessions", postgresql_using="gin")
