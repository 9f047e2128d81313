"""walks: what flow statistics read — steps taken from each node of a flow
version (counted as walks advance, backfilled from the walks' paths), and the
flow's walks indexed by version with the columns the counts need.

Revision ID: walks_0008
Revises: walks_0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import across_tenants, tenant_table

revision: str = "walks_0008"
down_revision: str | None = "walks_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flow_node_passes",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("flow_id", sa.UUID(), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("passes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id", "flow_id", "flow_version", "node_id", name="flow_node_passes_pkey"
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "flow_id"],
            ["walks.flows.account_id", "walks.flows.id"],
            name="flow_node_passes_flow_fkey",
            ondelete="CASCADE",
        ),
        schema="walks",
    )
    tenant_table("walks.flow_node_passes", privileges="SELECT, INSERT, UPDATE")
    across_tenants(
        ("walks.l1_walk_sessions", "walks.flow_node_passes"),
        """INSERT INTO walks.flow_node_passes (account_id, flow_id, flow_version, node_id, passes)
           SELECT w.account_id, w.flow_id, w.flow_version, step->>'node', count(*)
           FROM walks.l1_walk_sessions w, jsonb_array_elements(w.walked_path) AS step
           WHERE w.flow_id IS NOT NULL AND w.flow_version IS NOT NULL AND step->>'node' IS NOT NULL
           GROUP BY 1, 2, 3, 4""",
    )
    op.drop_index("l1_walk_sessions_by_flow", table_name="l1_walk_sessions", schema="walks")
    op.create_index(
        "l1_walk_sessions_by_flow",
        "l1_walk_sessions",
        ["account_id", "flow_id", "flow_version"],
        schema="walks",
        postgresql_include=["status", "start_time", "end_time", "current_node_id"],
    )


def downgrade() -> None:
    op.drop_index("l1_walk_sessions_by_flow", table_name="l1_walk_sessions", schema="walks")
    op.create_index("l1_walk_sessions_by_flow", "l1_walk_sessions", ["account_id", "flow_id"], schema="walks")
    op.drop_table("flow_node_passes", schema="walks")
