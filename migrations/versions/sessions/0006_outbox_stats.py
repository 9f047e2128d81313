"""sessions: the outbox's figures for metrics (backlog, oldest pending, dead letters).

Revision ID: sessions_0006
Revises: sessions_0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from migrations.tenancy import definer_function, drop_definer_function

revision: str = "sessions_0006"
down_revision: str | None = "sessions_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Beside what sessions_0002 granted (account_id, delivered_at, next_attempt_at).
READS = {"sessions.outbox": "create_time, dead_at"}
SIGNATURE = "sessions.outbox_stats()"


def upgrade() -> None:
    # Cross-tenant and narrow: three numbers over every account, no row of any.
    definer_function(
        SIGNATURE,
        """RETURNS TABLE (pending bigint, oldest_pending timestamptz, dead bigint)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT count(*) FILTER (WHERE dead_at IS NULL),
                   min(create_time) FILTER (WHERE dead_at IS NULL),
                   count(*) FILTER (WHERE dead_at IS NOT NULL)
            FROM sessions.outbox
            WHERE delivered_at IS NULL
        $$""",
        reads=READS,
    )


def downgrade() -> None:
    drop_definer_function(SIGNATURE, reads=READS)
