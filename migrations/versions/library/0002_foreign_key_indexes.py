"""library: an index under the foreign key from drafts to templates, account first.

Without it, deleting a template (which sets ``template_id`` to NULL in its
drafts) scans every draft of every account.

Revision ID: library_0002
Revises: library_0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "library_0002"
down_revision: str | None = "library_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "draft_templates_by_template", "draft_templates", ["account_id", "template_id"], schema="library"
    )


def downgrade() -> None:
    op.drop_index("draft_templates_by_template", table_name="draft_templates", schema="library")
