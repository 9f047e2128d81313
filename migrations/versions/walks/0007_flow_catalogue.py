"""walks: the flow catalogue — categories (a tree of at most 3 levels per
account), tags, a usage count (walks started, backfilled) and a search
document on flows.

Revision ID: walks_0007
Revises: walks_0006
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.tenancy import across_tenants, tenant_table

revision: str = "walks_0007"
down_revision: str | None = "walks_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, "
    '"left"((jsonb_path_query_array(tree, \'$."nodes"[*]."text"\'::jsonpath))::text, 100000)), \'C\')'
)


def upgrade() -> None:
    op.create_table(
        "flow_categories",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="flow_categories_pkey"),
        sa.ForeignKeyConstraint(
            ["account_id", "parent_id"],
            ["walks.flow_categories.account_id", "walks.flow_categories.id"],
            name="flow_categories_parent_fkey",
            ondelete="RESTRICT",
        ),
        sa.CheckConstraint("depth BETWEEN 1 AND 3", name="flow_categories_depth"),
        sa.CheckConstraint("(parent_id IS NULL) = (depth = 1)", name="flow_categories_top"),
        schema="walks",
    )
    op.create_index(
        "flow_categories_sibling_name",
        "flow_categories",
        [
            "account_id",
            sa.text("coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            sa.text("lower(name)"),
        ],
        unique=True,
        schema="walks",
    )
    op.create_index(
        "flow_categories_by_parent", "flow_categories", ["account_id", "parent_id"], schema="walks"
    )
    op.create_index(
        "flow_categories_by_name", "flow_categories", ["account_id", "name", "id"], schema="walks"
    )
    tenant_table("walks.flow_categories")

    op.add_column("flows", sa.Column("category_id", sa.UUID(), nullable=True), schema="walks")
    op.add_column(
        "flows",
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(length=40)),
            server_default=sa.text("'{}'::character varying[]"),
            nullable=False,
        ),
        schema="walks",
    )
    op.add_column(
        "flows",
        sa.Column("usage_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        schema="walks",
    )
    op.add_column(
        "flows",
        sa.Column("search", postgresql.TSVECTOR(), sa.Computed(SEARCH, persisted=True), nullable=True),
        schema="walks",
    )
    op.create_foreign_key(
        "flows_category_fkey",
        "flows",
        "flow_categories",
        ["account_id", "category_id"],
        ["account_id", "id"],
        source_schema="walks",
        referent_schema="walks",
        ondelete="RESTRICT",
    )
    op.create_check_constraint("flows_tags", "flows", "cardinality(tags) <= 20", schema="walks")
    op.create_index("flows_by_category", "flows", ["account_id", "category_id"], schema="walks")
    op.create_index(
        "flows_recent",
        "flows",
        ["account_id", sa.text("create_time DESC"), sa.text("id DESC")],
        schema="walks",
    )
    op.create_index(
        "flows_by_usage",
        "flows",
        ["account_id", sa.text("usage_count DESC"), sa.text("id DESC")],
        schema="walks",
    )
    op.create_index("flows_search", "flows", ["search"], schema="walks", postgresql_using="gin")
    op.create_index("flows_tags", "flows", ["tags"], schema="walks", postgresql_using="gin")
    across_tenants(
        ("walks.flows", "walks.l1_walk_sessions"),
        "UPDATE walks.flows f SET usage_count = w.n FROM "
        "(SELECT account_id, flow_id, count(*) AS n FROM walks.l1_walk_sessions "
        "WHERE flow_id IS NOT NULL GROUP BY account_id, flow_id) w "
        "WHERE f.account_id = w.account_id AND f.id = w.flow_id",
    )


def downgrade() -> None:
    for index in ("flows_tags", "flows_search", "flows_by_usage", "flows_recent", "flows_by_category"):
        op.drop_index(index, table_name="flows", schema="walks")
    op.drop_constraint("flows_tags", "flows", schema="walks", type_="check")
    op.drop_constraint("flows_category_fkey", "flows", schema="walks", type_="foreignkey")
    for column in ("search", "usage_count", "tags", "category_id"):
        op.drop_column("flows", column, schema="walks")
    op.drop_table("flow_categories", schema="walks")
