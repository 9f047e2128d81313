"""What the bootstrap takes away from the service logins, tried as each login."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from migrations.roles import SCHEMAS, RoleNames, bootstrap
from services.core.config import to_asyncpg_url
from tests.support import RunDatabase

# Every way to make a large object (lo_import also needs superuser anyway).
MAKE_LARGE_OBJECT = (
    "SELECT lo_from_bytea(0, '\\x00'::bytea)",
    "SELECT lo_creat(-1)",
    "SELECT lo_create(0)",
    "SELECT lo_import('/etc/hostname')",
)
# What a compromised login would store: no more timeouts for the service's queries.
STORED_BY_LOGIN = {"statement_timeout=0", "lock_timeout=0"}
# What the bootstrap stores for each login in its database (migrations.roles.Timeouts).
BACKSTOPS = {"statement_timeout=30000", "lock_timeout=5000", "idle_in_transaction_session_timeout=60000"}


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


async def test_service_logins_cannot_make_or_use_large_objects(database: RunDatabase) -> None:
    for schema in SCHEMAS:
        login = create_async_engine(database.runtime_url(schema))
        try:
            async with login.connect() as conn:
                for statement in MAKE_LARGE_OBJECT:
                    with pytest.raises(DBAPIError) as refused:
                        await conn.execute(text(statement))
                    assert _sqlstate(refused.value) == "42501", (schema, statement, refused.value)
                    await conn.rollback()
                callable_ = (
                    await conn.execute(
                        text(
                            "SELECT p.oid::regprocedure::text FROM pg_proc p"
                            " WHERE p.prosrc LIKE 'be\\_lo%' AND has_function_privilege(p.oid, 'EXECUTE')"
                        )
                    )
                ).scalars()
                assert list(callable_) == [], schema
        finally:
            await login.dispose()


async def _stored(admin: AsyncEngine, roles: RoleNames) -> dict[str, set[str]]:
    """The session defaults stored for each login, in any database."""
    stored: dict[str, set[str]] = {roles.runtime(s): set() for s in SCHEMAS}
    async with admin.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT r.rolname, unnest(s.setconfig) AS setting FROM pg_db_role_setting s"
                " JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = ANY(:logins)"
            ),
            {"logins": list(stored)},
        )
        for role, setting in rows:
            stored[role].add(setting)
    return stored


async def test_what_a_login_stores_for_itself_is_dropped_by_the_next_bootstrap(
    scratch: tuple[str, RoleNames],
) -> None:
    """No privilege keeps a role from storing session defaults for itself
    (here: turning off the timeouts that stop runaway queries). A deploy's
    bootstrap drops them again; a tenant it can never store."""
    url, roles = scratch
    admin = create_async_engine(to_asyncpg_url(url))
    database = make_url(url).database
    try:
        async with admin.begin() as conn:
            await bootstrap(conn, roles)
        for schema in SCHEMAS:
            login_url = make_url(to_asyncpg_url(url)).set(username=roles.runtime(schema), password=None)
            login = create_async_engine(login_url.render_as_string(hide_password=False))
            try:
                async with login.connect() as conn:
                    await conn.execute(text("ALTER ROLE CURRENT_USER SET statement_timeout = 0"))
                    await conn.execute(
                        text(f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" SET lock_timeout = 0')
                    )
                    await conn.commit()
                    with pytest.raises(DBAPIError) as refused:
                        await conn.execute(
                            text(
                                "ALTER ROLE CURRENT_USER SET app.current_account_id"
                                " = '00000000-0000-0000-0000-000000000001'"
                            )
                        )
                    assert _sqlstate(refused.value) == "42501"
            finally:
                await login.dispose()
        stored = await _stored(admin, roles)
        assert all(settings >= STORED_BY_LOGIN for settings in stored.values()), stored
        async with admin.begin() as conn:
            await bootstrap(conn, roles)
        stored = await _stored(admin, roles)
        assert all(settings == BACKSTOPS for settings in stored.values()), stored
    finally:
        await admin.dispose()


async def test_every_login_runs_with_the_backstop_timeouts(database: RunDatabase) -> None:
    for schema in SCHEMAS:
        login = create_async_engine(database.runtime_url(schema))
        try:
            async with login.connect() as conn:
                shown = {
                    name: (await conn.execute(text(f"SHOW {name}"))).scalar_one()
                    for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
                }
            assert shown == {
                "statement_timeout": "30s",
                "lock_timeout": "5s",
                "idle_in_transaction_session_timeout": "1min",
            }, (schema, shown)
        finally:
            await login.dispose()
