"""sessions: transactional outbox and the function that finds accounts with due work.

Revision ID: sessions_0002
Revises: sessions_0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.tenancy import definer_function, drop_definer_function, tenant_table

revision: str = "sessions_0002"
down_revision: str | None = "sessions_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READS = {"sessions.outbox": "account_id, delivered_at, next_attempt_at"}
SIGNATURE = "sessions.outbox_accounts_due(max_accounts integer)"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("topic", sa.String(length=60), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "trace",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="outbox_pkey"),
        sa.UniqueConstraint("account_id", "topic", "dedupe_key", name="outbox_dedupe_key"),
        schema="sessions",
    )
    op.create_index(
        "outbox_due",
        "outbox",
        ["account_id", "next_attempt_at"],
        unique=False,
        schema="sessions",
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    tenant_table("sessions.outbox", privileges="SELECT, INSERT, UPDATE")
    # The delivery worker's only cross-tenant view: which accounts have due work.
    definer_function(
        SIGNATURE,
        """RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT DISTINCT account_id FROM sessions.outbox
            WHERE delivered_at IS NULL AND next_attempt_at <= now()
            LIMIT least(greatest(max_accounts, 1), 1000)
        $$""",
        reads=READS,
    )


def downgrade() -> None:
    drop_definer_function(SIGNATURE, reads=READS)
    op.drop_index(
        "outbox_due", table_name="outbox", schema="sessions", postgresql_where=sa.text("delivered_at IS NULL")
    )
    op.drop_table("outbox", schema="sessions")
    op.execute(
        'REVOKE USAGE ON SCHEMA sessions FROM "' + op.get_context().opts["flowpilot_maintenance_role"] + '"'
    )
