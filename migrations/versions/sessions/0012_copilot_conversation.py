"""sessions: the copilot conversation: a session's messages (immutable) and
the proposals its replies make (pending until the engineer applies or
dismisses them).

Revision ID: sessions_0012
Revises: sessions_0011
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.tenancy import tenant_table

revision: str = "sessions_0012"
down_revision: str | None = "sessions_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = sa.String(200)


def upgrade() -> None:
    op.create_table(
        "session_messages",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.UUID(), nullable=False),
        sa.Column("author_name", NAME, nullable=True),
        sa.Column(
            "tool_calls",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("model", sa.String(100), server_default=sa.text("''"), nullable=False),
        sa.Column("tier", sa.String(10), server_default=sa.text("''"), nullable=False),
        sa.Column("prompt_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("partial", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="session_messages_pkey"),
        sa.ForeignKeyConstraint(
            ["account_id", "session_id"],
            ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
            name="session_messages_session_fkey",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="session_messages_role"),
        sa.CheckConstraint("length(text) <= 32000", name="session_messages_text_length"),
        sa.CheckConstraint("jsonb_typeof(tool_calls) = 'array'", name="session_messages_tool_calls_is_array"),
        schema="sessions",
    )
    op.create_index(
        "session_messages_history",
        "session_messages",
        ["account_id", "session_id", "create_time", "id"],
        schema="sessions",
    )
    # Messages are immutable: the runtime role reads and inserts them only.
    tenant_table("sessions.session_messages", privileges="SELECT, INSERT")

    op.create_table(
        "message_proposals",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("tool_call_id", sa.String(100), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(20), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("result", sa.String(200), nullable=True),
        sa.Column("decided_by", sa.UUID(), nullable=True),
        sa.Column("decided_by_name", NAME, nullable=True),
        sa.Column("decide_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="message_proposals_pkey"),
        sa.ForeignKeyConstraint(
            ["account_id", "message_id"],
            ["sessions.session_messages.account_id", "sessions.session_messages.id"],
            name="message_proposals_message_fkey",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "session_id"],
            ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
            name="message_proposals_session_fkey",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("kind IN ('fact', 'lane_item', 'fix')", name="message_proposals_kind"),
        sa.CheckConstraint("state IN ('pending', 'applied', 'dismissed')", name="message_proposals_state"),
        sa.CheckConstraint("jsonb_typeof(payload) = 'object'", name="message_proposals_payload_is_object"),
        schema="sessions",
    )
    op.create_index(
        "message_proposals_by_message",
        "message_proposals",
        ["account_id", "message_id", "ordinal"],
        schema="sessions",
    )
    op.create_index(
        "message_proposals_by_session", "message_proposals", ["account_id", "session_id"], schema="sessions"
    )
    # A proposal's state moves once (applied or dismissed); it is never deleted.
    tenant_table("sessions.message_proposals", privileges="SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.drop_index("message_proposals_by_session", table_name="message_proposals", schema="sessions")
    op.drop_index("message_proposals_by_message", table_name="message_proposals", schema="sessions")
    op.drop_table("message_proposals", schema="sessions")
    op.drop_index("session_messages_history", table_name="session_messages", schema="sessions")
    op.drop_table("session_messages", schema="sessions")
