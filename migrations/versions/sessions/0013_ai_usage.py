"""sessions: the account's AI token usage per month (UTC), counted from every
model call whose tokens are known (copilot replies), against the
``ai.monthly_token_budget`` setting.

Revision ID: sessions_0013
Revises: sessions_0012
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import tenant_table

revision: str = "sessions_0013"
down_revision: str | None = "sessions_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_usage",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("model_calls", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "month", name="ai_usage_pkey"),
        sa.CheckConstraint("EXTRACT(day FROM month) = 1", name="ai_usage_month_is_first_day"),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND model_calls >= 0", name="ai_usage_nonnegative"
        ),
        schema="sessions",
    )
    # Counters only grow: the runtime role adds to a month, never deletes one.
    tenant_table("sessions.ai_usage", privileges="SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.drop_table("ai_usage", schema="sessions")
