"""sessions: handoff (assignee, the escalating walk), note revisions, fix
decisions (who, why), and display names beside recorded user ids.

Revision ID: sessions_0009
Revises: sessions_0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import tenant_table

revision: str = "sessions_0009"
down_revision: str | None = "sessions_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = sa.String(200)
SESSION_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("resolution_note_revision", sa.Integer()),
    ("resolution_note_posted_by", sa.UUID()),
    ("resolution_note_posted_by_name", NAME),
    ("escalation_package_revision", sa.Integer()),
    ("escalation_package_posted_by", sa.UUID()),
    ("escalation_package_posted_by_name", NAME),
    ("created_by_name", NAME),
    ("assignee", sa.UUID()),
    ("assignee_name", NAME),
    ("closed_by", sa.UUID()),
    ("closed_by_name", NAME),
    ("escalated_walk_id", sa.UUID()),
]
FIX_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("decided_by", sa.UUID()),
    ("decided_by_name", NAME),
    ("reject_reason", sa.Text()),
]


def upgrade() -> None:
    for name, type_ in SESSION_COLUMNS:
        op.add_column("ai_sessions", sa.Column(name, type_, nullable=True), schema="sessions")
    for name, type_ in FIX_COLUMNS:
        op.add_column("session_suggested_fixes", sa.Column(name, type_, nullable=True), schema="sessions")
    # Posted revisions of one session are few, but a posted one gets one more
    # so the earlier ones are still there.
    op.execute(
        """UPDATE sessions.ai_sessions
           SET resolution_note_revision = CASE WHEN resolution_note_external_id IS NOT NULL THEN 1 END,
               escalation_package_revision = CASE WHEN escalation_package_external_id IS NOT NULL THEN 1 END"""
    )
    op.create_index(
        "ai_sessions_by_assignee",
        "ai_sessions",
        ["account_id", "assignee", sa.text("create_time DESC"), sa.text("id DESC")],
        schema="sessions",
    )
    op.create_table(
        "note_revisions",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("post_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("posted_by", sa.UUID(), nullable=False),
        sa.Column("posted_by_name", NAME, nullable=True),
        sa.PrimaryKeyConstraint("account_id", "id", name="note_revisions_pkey"),
        sa.ForeignKeyConstraint(
            ["account_id", "session_id"],
            ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
            name="note_revisions_session_fkey",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "account_id", "session_id", "kind", "revision", name="note_revisions_revision_key"
        ),
        sa.UniqueConstraint(
            "account_id", "session_id", "kind", "external_id", name="note_revisions_external_id_key"
        ),
        sa.CheckConstraint("kind IN ('resolution_note', 'escalation_package')", name="note_revisions_kind"),
        sa.CheckConstraint("format IN ('markdown', 'plain', 'html')", name="note_revisions_format"),
        sa.CheckConstraint("revision > 0", name="note_revisions_revision_positive"),
        schema="sessions",
    )
    op.create_index(
        "note_revisions_history",
        "note_revisions",
        ["account_id", "session_id", "post_time", "id"],
        schema="sessions",
    )
    tenant_table("sessions.note_revisions", privileges="SELECT, INSERT")
    # The revisions posted before this migration: one each, as recorded.
    op.execute(
        """INSERT INTO sessions.note_revisions
               (account_id, id, session_id, kind, revision, text, format, state_version,
                external_id, post_time, posted_by)
           SELECT account_id, gen_random_uuid(), id, 'resolution_note', 1, resolution_note_markdown,
                  'markdown', resolution_note_state_version, resolution_note_external_id,
                  resolution_note_post_time, created_by
           FROM sessions.ai_sessions WHERE resolution_note_external_id IS NOT NULL
           UNION ALL
           SELECT account_id, gen_random_uuid(), id, 'escalation_package', 1, escalation_package_markdown,
                  'markdown', escalation_package_state_version, escalation_package_external_id,
                  escalation_package_post_time, created_by
           FROM sessions.ai_sessions WHERE escalation_package_external_id IS NOT NULL"""
    )


def downgrade() -> None:
    op.drop_index("note_revisions_history", table_name="note_revisions", schema="sessions")
    op.drop_table("note_revisions", schema="sessions")
    op.drop_index("ai_sessions_by_assignee", table_name="ai_sessions", schema="sessions")
    for name, _ in reversed(FIX_COLUMNS):
        op.drop_column("session_suggested_fixes", name, schema="sessions")
    for name, _ in reversed(SESSION_COLUMNS):
        op.drop_column("ai_sessions", name, schema="sessions")
