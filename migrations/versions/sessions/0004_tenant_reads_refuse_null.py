"""sessions: the tenant reads refuse a NULL tenant and run with a fixed search_path.

Form 2 of ``migrations.tenancy.tenant_read`` over the bodies of
``sessions_0003`` (unchanged; every name in them is schema-qualified).

Revision ID: sessions_0004
Revises: sessions_0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from migrations.tenancy import tenant_read

revision: str = "sessions_0004"
down_revision: str | None = "sessions_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READ_SESSION = "sessions.read_session(p_tenant uuid, p_session uuid)"
LIST_FACTS = (
    "sessions.list_facts(p_tenant uuid, p_session uuid, p_show_deleted boolean,"
    " p_after_time timestamptz, p_after_id uuid, p_limit integer)"
)

# As in sessions_0003: one statement per case, so that each keeps its own plan.
_PAGE = """RETURN QUERY SELECT * FROM sessions.session_facts f
                WHERE f.session_id = p_session{deleted}{after}
                ORDER BY f.create_time, f.id LIMIT p_limit;"""
_ACTIVE = " AND f.deleted_at IS NULL"
_AFTER = " AND (f.create_time, f.id) > (p_after_time, p_after_id)"
_READ_SESSION_BODY = "RETURN QUERY SELECT * FROM sessions.ai_sessions s WHERE s.id = p_session;"
_LIST_FACTS_BODY = f"""IF NOT EXISTS (SELECT 1 FROM sessions.ai_sessions s WHERE s.id = p_session) THEN
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
            END IF;"""


def _create(form: int) -> None:
    tenant_read(READ_SESSION, "SETOF sessions.ai_sessions", _READ_SESSION_BODY, form=form)
    tenant_read(LIST_FACTS, "SETOF sessions.session_facts", _LIST_FACTS_BODY, form=form)


def upgrade() -> None:
    _create(2)


def downgrade() -> None:
    _create(1)
