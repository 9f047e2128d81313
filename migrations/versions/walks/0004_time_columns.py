"""walks: one naming for times and the ticket (``*_time`` as the API says it,
``ticket_ref`` as sessions says it, ``resolution_summary`` as sessions says it).

Revision ID: walks_0004
Revises: walks_0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from migrations.tenancy import rename_columns

revision: str = "walks_0004"
down_revision: str | None = "walks_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = {
    "ticket_id": "ticket_ref",
    "resolution_notes": "resolution_summary",
    "started_at": "start_time",
    "last_step_at": "last_step_time",
    "resolved_at": "end_time",
}


def upgrade() -> None:
    rename_columns("walks.l1_walk_sessions", RENAMES)


def downgrade() -> None:
    rename_columns("walks.l1_walk_sessions", RENAMES, reverse=True)
