"""sessions: a note preview is cached per prompt version too (an account's
override or reset of `task.note` / `task.package` is another text).

Previews from before sessions_0015 were written with the built-in prompts,
version 1.

Revision ID: sessions_0016
Revises: sessions_0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.tenancy import across_tenants

revision: str = "sessions_0016"
down_revision: str | None = "sessions_0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ["account_id", "session_id", "kind", "state_version", "format", "time_zone"]


def upgrade() -> None:
    across_tenants(
        ("sessions.note_previews",),
        "UPDATE sessions.note_previews SET prompt_version = 1 WHERE prompt_version IS NULL",
    )
    op.alter_column(
        "note_previews", "prompt_version", nullable=False, server_default=sa.text("1"), schema="sessions"
    )
    op.drop_constraint("note_previews_pkey", "note_previews", schema="sessions", type_="primary")
    op.create_primary_key("note_previews_pkey", "note_previews", [*_KEY, "prompt_version"], schema="sessions")


def downgrade() -> None:
    # Previews are a cache: all but the newest prompt version of each go.
    across_tenants(
        ("sessions.note_previews",),
        """DELETE FROM sessions.note_previews p USING sessions.note_previews q
           WHERE (p.account_id, p.session_id, p.kind, p.state_version, p.format, p.time_zone)
               = (q.account_id, q.session_id, q.kind, q.state_version, q.format, q.time_zone)
             AND p.prompt_version < q.prompt_version""",
    )
    op.drop_constraint("note_previews_pkey", "note_previews", schema="sessions", type_="primary")
    op.create_primary_key("note_previews_pkey", "note_previews", _KEY, schema="sessions")
    op.alter_column("note_previews", "prompt_version", nullable=True, server_default=None, schema="sessions")
