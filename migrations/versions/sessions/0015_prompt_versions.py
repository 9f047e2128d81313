"""sessions: the prompt version a note was written with.

``prompt_version`` on ``note_previews`` (the version of the account's
``task.note`` or ``task.package`` prompt the preview was generated with) and
on ``note_revisions`` (copied from the preview it posts). NULL on rows
written before prompts were read from the settings service. The ``system``
prompt's version is not recorded.

Revision ID: sessions_0015
Revises: sessions_0014
Create Date: 2026-12-11
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sessions_0015"
down_revision: str | None = "sessions_0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("note_previews", "note_revisions"):
        op.add_column(table, sa.Column("prompt_version", sa.Integer(), nullable=True), schema="sessions")


def downgrade() -> None:
    for table in ("note_revisions", "note_previews"):
        op.drop_column(table, "prompt_version", schema="sessions")
