"""Bootstrap: database roles, service schemas and the tenancy function.

Runs as an administrator before the migrations, and is idempotent.

- ``<prefix>_owner`` (NOLOGIN) owns every schema, table and function;
  migrations run as it (the admin connection does ``SET ROLE``).
- ``<prefix>_<service>`` is each service's runtime login: NOSUPERUSER,
  NOBYPASSRLS, NOINHERIT, owns nothing, USAGE on its own schema only; table
  privileges are granted by each table's migration.
- ``<prefix>_maintenance`` (NOLOGIN, non-superuser, BYPASSRLS) owns the narrow
  SECURITY DEFINER functions that must see several tenants (the outbox and
  stale-walk sweeps). It cannot log in and no login is a member of it: the
  only way to use it is to call those functions, which return account ids.
- ``tenancy.current_account_id()`` is the fail-closed current account: the
  transaction's ``app.current_account_id`` as a uuid, NULL when unset or
  empty, so a policy comparing against it matches nothing. It has no
  ``SET search_path`` on purpose: a function with a ``SET`` clause is never
  inlined, and every policy would pay a SQL-function call with a setting
  saved and restored (measured: 13 µs per statement against 2; a get-session
  tenant read's round trip went from 123 to 91 µs). Its names are qualified
  with ``pg_catalog`` (searched first whatever the path) and no login role
  can create objects in any schema, so nothing can stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMAS = ("sessions", "library", "settings", "walks")


@dataclass(frozen=True, slots=True)
class RoleNames:
    prefix: str = "flowpilot"

    @property
    def owner(self) -> str:
        return f"{self.prefix}_owner"

    @property
    def maintenance(self) -> str:
        return f"{self.prefix}_maintenance"

    def runtime(self, schema: str) -> str:
        return f"{self.prefix}_{schema}"

    def all(self) -> list[str]:
        return [self.owner, self.maintenance, *(self.runtime(s) for s in SCHEMAS)]


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not a safe identifier: {name!r}")
    return f'"{name}"'


async def _ensure_role(conn: AsyncConnection, name: str, attributes: str, password: str | None) -> None:
    exists = (await conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name})).first()
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(text(f"{verb} ROLE {_ident(name)} {attributes}"))
    if password is not None:
        # Passwords are not bindable in DDL; quote_literal-style escaping via format().
        literal = (await conn.execute(text("SELECT quote_literal(:p)"), {"p": password})).scalar_one()
        await conn.execute(text(f"ALTER ROLE {_ident(name)} PASSWORD {literal}"))


async def bootstrap(conn: AsyncConnection, roles: RoleNames, *, runtime_password: str | None = None) -> None:
    """Creates or repairs roles, schemas and grants. ``conn`` is an admin's."""
    restricted = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
    await _ensure_role(conn, roles.owner, f"NOLOGIN {restricted}", None)
    await _ensure_role(
        conn, roles.maintenance, "NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION", None
    )
    for schema in SCHEMAS:
        await _ensure_role(conn, roles.runtime(schema), f"LOGIN NOINHERIT {restricted}", runtime_password)
    database = (await conn.execute(text("SELECT current_database()"))).scalar_one()
    owner = _ident(roles.owner)
    await conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    await conn.execute(text(f"REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC"))
    await conn.execute(text(f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {owner}"))
    await conn.execute(text("CREATE SCHEMA IF NOT EXISTS tenancy AUTHORIZATION " + owner))
    await conn.execute(text(f"SET LOCAL ROLE {owner}"))
    await conn.execute(
        text(
            """
            CREATE OR REPLACE FUNCTION tenancy.current_account_id() RETURNS uuid
            LANGUAGE sql STABLE PARALLEL SAFE
            AS $$ SELECT CAST(NULLIF(pg_catalog.current_setting('app.current_account_id', true), '')
                              AS pg_catalog.uuid) $$
            """
        )
    )
    await conn.execute(text("REVOKE ALL ON FUNCTION tenancy.current_account_id() FROM PUBLIC"))
    await conn.execute(text("RESET ROLE"))
    for schema in SCHEMAS:
        runtime = _ident(roles.runtime(schema))
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)} AUTHORIZATION {owner}"))
        await conn.execute(text(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {runtime}"))
        await conn.execute(text(f"GRANT USAGE ON SCHEMA {_ident(schema)}, tenancy TO {runtime}"))
        await conn.execute(text(f"GRANT EXECUTE ON FUNCTION tenancy.current_account_id() TO {runtime}"))


async def drop_roles(conn: AsyncConnection, roles: RoleNames) -> None:
    """Removes the roles (tests); their database must already be dropped."""
    for name in roles.all():
        await conn.execute(text(f"DROP ROLE IF EXISTS {_ident(name)}"))
