"""sessions: handoff rules in the data (sessions worked by their creator
assigned to them, one session per escalated walk), the stale-session sweep
(its index, its narrow cross-tenant function, and the reason it records), and
the note revisions sessions_0009 meant to record but could not see.

Revision ID: sessions_0010
Revises: sessions_0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import across_tenants, definer_function, drop_definer_function

revision: str = "sessions_0010"
down_revision: str | None = "sessions_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READS = {"sessions.ai_sessions": "account_id, status, update_time"}
POSTED_BEFORE_REVISIONS = [
    f"""INSERT INTO sessions.note_revisions
            (account_id, id, session_id, kind, revision, text, format, state_version,
             external_id, post_time, posted_by)
        SELECT account_id, gen_random_uuid(), id, '{kind}', 1, coalesce({kind}_markdown, ''), 'markdown',
               coalesce({kind}_state_version, 0), {kind}_external_id, coalesce({kind}_post_time, now()), created_by
        FROM sessions.ai_sessions
        WHERE {kind}_external_id IS NOT NULL AND {kind}_revision IS NULL"""
    for kind in ("resolution_note", "escalation_package")
] + [
    f"""UPDATE sessions.ai_sessions SET {kind}_revision = 1
        WHERE {kind}_external_id IS NOT NULL AND {kind}_revision IS NULL"""
    for kind in ("resolution_note", "escalation_package")
]
SIGNATURE = "sessions.accounts_with_stale_sessions(idle_since timestamptz, max_accounts integer)"


def upgrade() -> None:
    op.add_column("ai_sessions", sa.Column("abandon_reason", sa.Text(), nullable=True), schema="sessions")
    # A session someone started for themselves is theirs: only escalated
    # walks' sessions wait unassigned in the team queue. Every session so far
    # was its creator's (escalations too: the L1 technician owned them).
    across_tenants(
        ("sessions.ai_sessions",),
        """UPDATE sessions.ai_sessions SET assignee = created_by, assignee_name = created_by_name
           WHERE assignee IS NULL AND escalated_walk_id IS NULL""",
    )
    # sessions_0009 meant to record the notes and packages posted before it
    # as their revision 1, but ran as the owner under forced RLS and saw no
    # session: done here, for those still without a revision.
    across_tenants(("sessions.ai_sessions", "sessions.note_revisions"), *POSTED_BEFORE_REVISIONS)
    # One session per escalated walk: a retried escalation replays its
    # request id; another session naming the same walk is refused.
    op.create_index(
        "ai_sessions_escalated_walk_key",
        "ai_sessions",
        ["account_id", "escalated_walk_id"],
        unique=True,
        schema="sessions",
        postgresql_where=sa.text("escalated_walk_id IS NOT NULL"),
    )
    # The sweep: an account's active sessions by last change.
    op.create_index(
        "ai_sessions_active_by_update_time",
        "ai_sessions",
        ["account_id", "update_time"],
        schema="sessions",
        postgresql_where=sa.text("status = 'active'"),
    )
    # Cross-tenant and narrow: the accounts with an active session unchanged
    # since ``idle_since``, nothing else of any row.
    definer_function(
        SIGNATURE,
        """RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT DISTINCT account_id FROM sessions.ai_sessions
            WHERE status = 'active' AND update_time < idle_since
            LIMIT least(greatest(max_accounts, 1), 10000)
        $$""",
        reads=READS,
    )


def downgrade() -> None:
    drop_definer_function(SIGNATURE, reads=READS)
    op.drop_index(
        "ai_sessions_active_by_update_time",
        table_name="ai_sessions",
        schema="sessions",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_index(
        "ai_sessions_escalated_walk_key",
        table_name="ai_sessions",
        schema="sessions",
        postgresql_where=sa.text("escalated_walk_id IS NOT NULL"),
    )
    op.drop_column("ai_sessions", "abandon_reason", schema="sessions")
