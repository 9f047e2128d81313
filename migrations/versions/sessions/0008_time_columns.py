"""sessions: times named ``*_time``, as the API names them.

The three functions that read a renamed column get the same body over the
new names (a function body is text and does not follow a rename).

Revision ID: sessions_0008
Revises: sessions_0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from migrations.tenancy import rename_columns, replace_definer_function, tenant_read

revision: str = "sessions_0008"
down_revision: str | None = "sessions_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = {
    "sessions.ai_sessions": {
        "resolution_note_posted_at": "resolution_note_post_time",
        "escalation_package_posted_at": "escalation_package_post_time",
    },
    "sessions.session_facts": {"deleted_at": "delete_time"},
    "sessions.session_suggested_fixes": {"superseded_at": "supersede_time"},
    "sessions.outbox": {
        "next_attempt_at": "next_attempt_time",
        "delivered_at": "deliver_time",
        "dead_at": "dead_time",
    },
}

LIST_FACTS = (
    "sessions.list_facts(p_tenant uuid, p_session uuid, p_show_deleted boolean,"
    " p_after_time timestamptz, p_after_id uuid, p_limit integer)"
)
_PAGE = """RETURN QUERY SELECT * FROM sessions.session_facts f
                WHERE f.session_id = p_session{deleted}{after}
                ORDER BY f.create_time, f.id LIMIT p_limit;"""
_AFTER = " AND (f.create_time, f.id) > (p_after_time, p_after_id)"


def _list_facts_body(deleted: str) -> str:
    active = f" AND f.{deleted} IS NULL"
    return f"""IF NOT EXISTS (SELECT 1 FROM sessions.ai_sessions s WHERE s.id = p_session) THEN
                RAISE EXCEPTION 'session not found' USING ERRCODE = 'no_data_found';
            END IF;
            IF p_after_time IS NULL AND p_show_deleted THEN
                {_PAGE.format(deleted="", after="")}
            ELSIF p_after_time IS NULL THEN
                {_PAGE.format(deleted=active, after="")}
            ELSIF p_show_deleted THEN
                {_PAGE.format(deleted="", after=_AFTER)}
            ELSE
                {_PAGE.format(deleted=active, after=_AFTER)}
            END IF;"""


def _outbox_accounts_due(delivered: str, next_attempt: str) -> str:
    return f"""RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT DISTINCT account_id FROM sessions.outbox
            WHERE {delivered} IS NULL AND {next_attempt} <= now()
            LIMIT least(greatest(max_accounts, 1), 1000)
        $$"""


def _outbox_stats(delivered: str, dead: str) -> str:
    return f"""RETURNS TABLE (pending bigint, oldest_pending timestamptz, dead bigint)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT count(*) FILTER (WHERE {dead} IS NULL),
                   min(create_time) FILTER (WHERE {dead} IS NULL),
                   count(*) FILTER (WHERE {dead} IS NOT NULL)
            FROM sessions.outbox
            WHERE {delivered} IS NULL
        $$"""


def _functions(deleted: str, delivered: str, next_attempt: str, dead: str) -> None:
    tenant_read(LIST_FACTS, "SETOF sessions.session_facts", _list_facts_body(deleted), form=2)
    replace_definer_function(
        "sessions.outbox_accounts_due(max_accounts integer)", _outbox_accounts_due(delivered, next_attempt)
    )
    replace_definer_function("sessions.outbox_stats()", _outbox_stats(delivered, dead))


def upgrade() -> None:
    for table, renames in RENAMES.items():
        rename_columns(table, renames)
    _functions("delete_time", "deliver_time", "next_attempt_time", "dead_time")


def downgrade() -> None:
    for table, renames in RENAMES.items():
        rename_columns(table, renames, reverse=True)
    _functions("deleted_at", "delivered_at", "next_attempt_at", "dead_at")
