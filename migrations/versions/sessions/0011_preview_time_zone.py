"""sessions: a note preview is cached per time zone too (``notes.time_zone``
changes its times, so another zone is another text).

Revision ID: sessions_0011
Revises: sessions_0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import across_tenants

revision: str = "sessions_0011"
down_revision: str | None = "sessions_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ["account_id", "session_id", "kind", "state_version", "format"]


def upgrade() -> None:
    op.add_column(
        "note_previews",
        sa.Column("time_zone", sa.String(64), server_default=sa.text("'UTC'"), nullable=False),
        schema="sessions",
    )
    op.drop_constraint("note_previews_pkey", "note_previews", schema="sessions", type_="primary")
    op.create_primary_key("note_previews_pkey", "note_previews", [*_KEY, "time_zone"], schema="sessions")


def downgrade() -> None:
    # Previews are a cache: those of other zones than UTC go.
    across_tenants(("sessions.note_previews",), "DELETE FROM sessions.note_previews WHERE time_zone <> 'UTC'")
    op.drop_constraint("note_previews_pkey", "note_previews", schema="sessions", type_="primary")
    op.create_primary_key("note_previews_pkey", "note_previews", _KEY, schema="sessions")
    op.drop_column("note_previews", "time_zone", schema="sessions")
