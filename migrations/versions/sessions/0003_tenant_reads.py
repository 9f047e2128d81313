"""sessions: the hot reads (get a session, a page of its facts) as tenant read functions.

Revision ID: sessions_0003
Revises: sessions_0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from migrations.tenancy import drop_tenant_read, tenant_read

revision: str = "sessions_0003"
down_revision: str | None = "sessions_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READ_SESSION = "sessions.read_session(p_tenant uuid, p_session uuid)"
LIST_FACTS = (
    "sessions.list_facts(p_tenant uuid, p_session uuid, p_show_deleted boolean,"
    " p_after_time timestamptz, p_after_id uuid, p_limit integer)"
)

# One statement per case, so that each keeps its own plan: the keyset position
# is an index condition, and the active-facts page uses the partial index.
_PAGE = """RETURN QUERY SELECT * FROM sessions.session_facts f
                WHERE f.session_id = p_session{deleted}{after}
                ORDER BY f.create_time, f.id LIMIT p_limit;"""
_ACTIVE = " AND f.deleted_at IS NULL"
_AFTER = " AND (f.create_time, f.id) > (p_after_time, p_after_id)"


def upgrade() -> None:
    tenant_read(
        READ_SESSION,
        "SETOF sessions.ai_sessions",
        "RETURN QUERY SELECT * FROM sessions.ai_sessions s WHERE s.id = p_session;",
    )
    # A session that is not there (or not the caller's) is SQLSTATE P0002,
    # told apart from a session without facts.
    tenant_read(
        LIST_FACTS,
        "SETOF sessions.session_facts",
        f"""IF NOT EXISTS (SELECT 1 FROM sessions.ai_sessions s WHERE s.id = p_session) THEN
                RAISE EXCEPTION 'session not found' USING ERRCODE = 'no_data_found';
            END IF;
            IF p_after_time IS NULL AND p_show_deleted THEN
                {_PAGE.format(deleted="", after="")}
            ELSIF p_after_time IS NULL THEN
                {_PAGE.format(deleted=_ACTIVE, after="")}
            ELSIF p_show_deleted THEN
                {_PAGE.format(deleted="", after=_AFTER)}
            ELSE
                {_PAGE.format(deleted=_ACTIVE, after=_AFTER)}
            END IF;""",
    )


def downgrade() -> None:
    drop_tenant_read(LIST_FACTS)
    drop_tenant_read(READ_SESSION)
