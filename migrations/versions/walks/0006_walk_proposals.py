"""walks: proposals saved from AI-built walks (source 'walk'), with the walk,
its ticket, its technician and the path taken; one proposal per walk.

Revision ID: walks_0006
Revises: walks_0005
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.tenancy import across_tenants

revision: str = "walks_0006"
down_revision: str | None = "walks_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "flow_proposals"


def upgrade() -> None:
    op.add_column(T, sa.Column("source_walk_id", sa.UUID(), nullable=True), schema="walks")
    op.add_column(T, sa.Column("source_ticket_ref", sa.String(64), nullable=True), schema="walks")
    op.add_column(T, sa.Column("source_user_id", sa.UUID(), nullable=True), schema="walks")
    op.add_column(T, sa.Column("source_user_name", sa.String(200), nullable=True), schema="walks")
    op.add_column(
        T, sa.Column("walked_path", postgresql.JSONB(astext_type=sa.Text()), nullable=True), schema="walks"
    )
    op.drop_constraint("flow_proposals_source", T, schema="walks", type_="check")
    op.create_check_constraint(
        "flow_proposals_source", T, "source IN ('user', 'ai_analysis', 'walk')", schema="walks"
    )
    op.create_check_constraint(
        "flow_proposals_walk_source", T, "(source = 'walk') = (source_walk_id IS NOT NULL)", schema="walks"
    )
    op.create_index(
        "flow_proposals_by_source_walk", T, ["account_id", "source_walk_id"], unique=True, schema="walks"
    )
    op.create_foreign_key(
        "flow_proposals_source_walk_fkey",
        T,
        "l1_walk_sessions",
        ["account_id", "source_walk_id"],
        ["account_id", "id"],
        source_schema="walks",
        referent_schema="walks",
        ondelete="RESTRICT",
    )


def downgrade() -> None:
    op.drop_constraint("flow_proposals_source_walk_fkey", T, schema="walks", type_="foreignkey")
    op.drop_index("flow_proposals_by_source_walk", table_name=T, schema="walks")
    op.drop_constraint("flow_proposals_walk_source", T, schema="walks", type_="check")
    op.drop_constraint("flow_proposals_source", T, schema="walks", type_="check")
    # Walks may refer to those proposals: they stay, as AI proposals.
    across_tenants(
        ("walks.flow_proposals",),
        "UPDATE walks.flow_proposals SET source = 'ai_analysis' WHERE source = 'walk'",
    )
    op.create_check_constraint(
        "flow_proposals_source", T, "source IN ('user', 'ai_analysis')", schema="walks"
    )
    for column in (
        "walked_path",
        "source_user_name",
        "source_user_id",
        "source_ticket_ref",
        "source_walk_id",
    ):
        op.drop_column(T, column, schema="walks")
