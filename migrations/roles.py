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

What a login could still do through PostgreSQL's defaults is taken away here
where one database's administrator can:

- Large objects live outside every schema, RLS and quota, and would be
  owned by the login. EXECUTE on the large-object functions is revoked from
  PUBLIC in this database (``pg_catalog`` of other databases is untouched).
  That takes a superuser; an administrator who is not one is told what to
  ask the cluster administrator for.
- A role may always store session defaults for itself
  (``ALTER ROLE CURRENT_USER SET statement_timeout = 0``); no privilege
  governs it. The bootstrap drops whatever the logins have stored (for every
  database and for this one) each time it runs, so a deploy undoes it;
  settings the logins should have are set after that.

What needs the cluster administrator (connecting to other databases, a login
changing its own password or settings in between deploys) is in the README,
"Tenancy in the database".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMAS = ("sessions", "library", "settings", "walks")

log = logging.getLogger(__name__)

# The large-object functions of pg_catalog (lo_*, loread, lowrite), found by
# the C function behind each, that PUBLIC may still call.
_OPEN_LARGE_OBJECT_FUNCTIONS = text(
    """
    SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace
      AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'internal')
      AND p.prosrc LIKE 'be\\_lo%'
      AND has_function_privilege('public', p.oid, 'EXECUTE')
    ORDER BY 1
    """
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Backstops every service login gets in this database (milliseconds; 0 is
    none): a statement, a lock wait, a transaction left idle. The services
    end what they start long before these; they stop what a lost client, a
    bug or a table lock would otherwise leave running."""

    statement_ms: int = 30_000
    lock_ms: int = 5_000
    idle_in_transaction_ms: int = 60_000

    def settings(self) -> dict[str, int]:
        return {
            "statement_timeout": self.statement_ms,
            "lock_timeout": self.lock_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_ms,
        }


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


async def bootstrap(
    conn: AsyncConnection,
    roles: RoleNames,
    *,
    runtime_password: str | None = None,
    timeouts: Timeouts = Timeouts(),
) -> None:
    """Creates or repairs roles, schemas and grants. ``conn`` is an admin's."""
    restricted = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
    await _ensure_role(conn, roles.owner, f"NOLOGIN {restricted}", None)
    await _ensure_role(
        conn, roles.maintenance, "NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION", None
    )
    database = (await conn.execute(text("SELECT current_database()"))).scalar_one()
    for schema in SCHEMAS:
        await _ensure_role(conn, roles.runtime(schema), f"LOGIN NOINHERIT {restricted}", runtime_password)
        await _drop_stored_settings(conn, roles.runtime(schema), database)
        for name, value in timeouts.settings().items():
            await conn.execute(
                text(
                    f"ALTER ROLE {_ident(roles.runtime(schema))} IN DATABASE {_ident(database)} SET {name} = {int(value)}"
                )
            )
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
    await _revoke_large_objects(conn, database)


async def _drop_stored_settings(conn: AsyncConnection, role: str, database: str) -> None:
    """Session defaults a login stored for itself (``ALTER ROLE … SET``), gone."""
    await conn.execute(text(f"ALTER ROLE {_ident(role)} RESET ALL"))
    await conn.execute(text(f"ALTER ROLE {_ident(role)} IN DATABASE {_ident(database)} RESET ALL"))


async def _revoke_large_objects(conn: AsyncConnection, database: str) -> None:
    """No large objects in this database but a superuser's. Without superuser
    the REVOKE only warns (the functions belong to the bootstrap superuser),
    so what is still callable is reported instead."""
    for function in (await conn.execute(_OPEN_LARGE_OBJECT_FUNCTIONS)).scalars().all():
        await conn.execute(text(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{function} FROM PUBLIC"))
    still = (await conn.execute(_OPEN_LARGE_OBJECT_FUNCTIONS)).scalars().all()
    if still:
        log.warning(
            "large objects stay open to every role of database %s: the bootstrap is not a superuser and"
            " could not revoke EXECUTE on %s from PUBLIC; ask the cluster administrator to"
            " (README, Tenancy in the database)",
            database,
            ", ".join(still),
        )


async def drop_roles(conn: AsyncConnection, roles: RoleNames) -> None:
    """Removes the roles (tests); their database must already be dropped."""
    for name in roles.all():
        await conn.execute(text(f"DROP ROLE IF EXISTS {_ident(name)}"))
