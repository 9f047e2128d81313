"""walks: an index under every foreign key, account first.

Without them, deleting a flow or a proposal (refused while a proposal or a
walk refers to it) scans the referring table, every account's rows, to find out.

Revision ID: walks_0002
Revises: walks_0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "walks_0002"
down_revision: str | None = "walks_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("flow_proposals_by_flow", "flow_proposals", ["account_id", "flow_id"]),
    ("l1_walk_sessions_by_flow", "l1_walk_sessions", ["account_id", "flow_id"]),
    ("l1_walk_sessions_by_flow_proposal", "l1_walk_sessions", ["account_id", "flow_proposal_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, schema="walks")


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table, schema="walks")
