"""Helpers for migrations: the one tenant-isolation pattern for every table."""

from __future__ import annotations

from alembic import op


def runtime_role() -> str:
    """The runtime login of the schema being migrated (set by env.py)."""
    return str(op.get_context().opts["flowpilot_runtime_role"])


def tenant_table(qualified: str, *, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """RLS ENABLE + FORCE with one policy (USING and WITH CHECK) on the current
    account, and the runtime role's privileges on the table."""
    policy = "account_id = (SELECT tenancy.current_account_id())"
    op.execute(f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON {qualified} USING ({policy}) WITH CHECK ({policy})")
    op.execute(f'GRANT {privileges} ON {qualified} TO "{runtime_role()}"')
