"""settings: the account's stored preferences as a tenant read function.

Revision ID: settings_0002
Revises: settings_0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from migrations.tenancy import drop_tenant_read, tenant_read

revision: str = "settings_0002"
down_revision: str | None = "settings_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READ_PREFERENCES = "settings.read_preferences(p_tenant uuid)"


def upgrade() -> None:
    tenant_read(
        READ_PREFERENCES,
        "TABLE (preferences jsonb)",
        "RETURN QUERY SELECT s.preferences FROM settings.account_settings s;",
    )


def downgrade() -> None:
    drop_tenant_read(READ_PREFERENCES)
