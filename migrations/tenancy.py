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


def _opt(name: str) -> str:
    return str(op.get_context().opts[name])


def definer_function(signature: str, definition: str, *, reads: dict[str, str]) -> None:
    """A SECURITY DEFINER function owned by the maintenance role, callable by
    the schema's runtime role only. ``reads`` maps each table it reads to the
    columns it needs; the maintenance role gets exactly those privileges.

    Ownership can only be given to the maintenance role by an administrator,
    so this steps out of the owner role for the duration.
    """
    maintenance, runtime, owner = (
        _opt("flowpilot_maintenance_role"),
        runtime_role(),
        _opt("flowpilot_owner_role"),
    )
    schema = signature.split(".", 1)[0]
    op.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{maintenance}"')
    for table, columns in reads.items():
        op.execute(f'GRANT SELECT ({columns}) ON {table} TO "{maintenance}"')
    op.execute("RESET ROLE")
    op.execute(f"CREATE FUNCTION {signature} {definition}")
    op.execute(f'ALTER FUNCTION {signature} OWNER TO "{maintenance}"')
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{runtime}"')
    op.execute(f'SET ROLE "{owner}"')


def drop_definer_function(signature: str, *, reads: dict[str, str]) -> None:
    maintenance, owner = _opt("flowpilot_maintenance_role"), _opt("flowpilot_owner_role")
    op.execute("RESET ROLE")
    op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute(f'SET ROLE "{owner}"')
    # Exactly the columns this function read: another definer function may
    # read other columns of the same table (sessions.outbox has two).
    for table, columns in reads.items():
        op.execute(f'REVOKE SELECT ({columns}) ON {table} FROM "{maintenance}"')


# The opening of every tenant read, by form. A migration names the form it
# creates, so a later form never changes what an applied migration did.
_GUARDS = {
    # sessions_0003, settings_0002. A NULL tenant slipped through: comparing
    # with NULL is never true, and set_config(…, NULL) resets the setting, so
    # the transaction lost its tenant for the statements after it.
    1: """IF coalesce(current_setting('app.current_account_id', true), '') NOT IN ('', p_tenant::text) THEN
                RAISE EXCEPTION 'a tenant read cannot change the tenant of its transaction'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            PERFORM set_config('app.current_account_id', p_tenant::text, true);""",
    # sessions_0004, settings_0003.
    2: """IF p_tenant IS NULL THEN
                RAISE EXCEPTION 'a tenant read needs a tenant (p_tenant is NULL)'
                    USING ERRCODE = 'null_value_not_allowed';
            END IF;
            IF coalesce(pg_catalog.current_setting('app.current_account_id', true), '') NOT IN ('', p_tenant::text) THEN
                RAISE EXCEPTION 'a tenant read cannot change the tenant of its transaction'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            PERFORM pg_catalog.set_config('app.current_account_id', p_tenant::text, true);""",
}
_CONFIG = {1: "", 2: " SET search_path = pg_catalog, pg_temp"}
TENANT_READ_FORM = 2  # the form every new tenant read uses


def tenant_read(signature: str, returns: str, body: str, *, form: int = 1) -> None:
    """Creates (or replaces) a read of the hot paths in one round trip (``Database.read``).

    The function's first statement sets the tenant from its first argument,
    ``p_tenant uuid`` — transaction-local and bound, as everywhere — and
    ``body`` (PL/pgSQL, plans cached per connection) then runs as the caller
    (SECURITY INVOKER), so row-level security applies as to any statement.
    Called on its own, the setting lives exactly as long as the call's
    implicit transaction. It refuses to change a tenant already set in an
    enclosing transaction.

    ``form`` versions that opening. 1 (the default, so that the applied
    migrations ``sessions_0003`` and ``settings_0002`` keep creating exactly
    what they did) accepts a NULL tenant. 2 (``TENANT_READ_FORM``, for every
    new tenant read) refuses it with SQLSTATE 22004 and fixes ``search_path``
    to ``pg_catalog, pg_temp``, so ``body`` must qualify every name of a
    service schema.
    """
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {signature} RETURNS {returns} LANGUAGE plpgsql VOLATILE{_CONFIG[form]} AS $fn$
        BEGIN
            {_GUARDS[form]}
            {body}
        END
        $fn$"""
    )
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{runtime_role()}"')


def drop_tenant_read(signature: str) -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {signature}")


def rename_columns(table: str, renames: dict[str, str], *, reverse: bool = False) -> None:
    """Renames columns of ``schema.table`` (old → new; ``reverse`` undoes it).

    Indexes, constraints, policies and column privileges follow a rename by
    themselves; function bodies do not (they are text): a migration that
    renames a column a function reads replaces that function too."""
    schema, name = table.split(".", 1)
    for old, new in renames.items():
        before, after = (new, old) if reverse else (old, new)
        op.alter_column(name, before, new_column_name=after, schema=schema)


def replace_definer_function(signature: str, definition: str) -> None:
    """A new body for a function made by ``definer_function``: owner,
    grants and the maintenance role's column privileges stay as they are."""
    op.execute("RESET ROLE")
    op.execute(f"CREATE OR REPLACE FUNCTION {signature} {definition}")
    op.execute(f'SET ROLE "{_opt("flowpilot_owner_role")}"')


def across_tenants(tables: tuple[str, ...], *statements: str) -> None:
    """Runs a data migration over every account's rows of ``tables``.

    Row-level security is forced on the owner too, so as the owner a
    statement would see no row at all (and change nothing, silently). FORCE is
    lifted for the statements and set again in the same transaction; the
    ALTER TABLE holds each table's lock until the migration commits, so
    nothing else ever runs while it is lifted."""
    for table in tables:
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    for statement in statements:
        op.execute(statement)
    for table in tables:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
