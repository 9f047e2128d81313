"""settings: the tenant read refuses a NULL tenant and runs with a fixed search_path.

Form 2 of ``migrations.tenancy.tenant_read`` over the body of ``settings_0002``.

Revision ID: settings_0003
Revises: settings_0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from migrations.tenancy import tenant_read

revision: str = "settings_0003"
down_revision: str | None = "settings_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READ_PREFERENCES = "settings.read_preferences(p_tenant uuid)"
_BODY = "RETURN QUERY SELECT s.preferences FROM settings.account_settings s;"


def upgrade() -> None:
    tenant_read(READ_PREFERENCES, "TABLE (preferences jsonb)", _BODY, form=2)


def downgrade() -> None:
    tenant_read(READ_PREFERENCES, "TABLE (preferences jsonb)", _BODY, form=1)
