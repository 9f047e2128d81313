"""library: times named ``*_time``, as the API names them.

Revision ID: library_0004
Revises: library_0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from migrations.tenancy import rename_columns

revision: str = "library_0004"
down_revision: str | None = "library_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = {"last_used_at": "last_use_time"}


def upgrade() -> None:
    rename_columns("library.script_templates", RENAMES)


def downgrade() -> None:
    rename_columns("library.script_templates", RENAMES, reverse=True)
