"""The database runtime's failure modes, against real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.config import to_asyncpg_url
from services.core.db import Database, TenantRead
from services.core.errors import Unavailable
from services.settings.storage import READ_PREFERENCES
from tests.support import RunDatabase


async def test_a_full_server_is_unavailable_not_an_internal_error(database: RunDatabase) -> None:
    # A login refused for lack of connection slots (SQLSTATE 53300, the same
    # code as max_connections exhausted) means "retry later" on both paths.
    role = f"fp_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(to_asyncpg_url(database.admin_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    url = make_url(to_asyncpg_url(database.admin_url)).set(username=role, password=None)
    db = Database.connect(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(Unavailable):
            async with db.transaction(uuid.uuid4()):
                pass
        with pytest.raises(Unavailable):
            await db.read(READ_PREFERENCES, uuid.uuid4())
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE "{role}"'))
        await admin.dispose()


async def test_a_tenant_read_never_changes_the_tenant_of_an_open_transaction(database: RunDatabase) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    db = Database.connect(database.runtime_url("settings"), pool_size=1)
    try:
        async with db.transaction(mine) as conn:
            # Same tenant inside a transaction: allowed (and a no-op for the setting).
            await conn.execute(text("SELECT * FROM settings.read_preferences(:t)"), {"t": mine})
            with pytest.raises(DBAPIError, match="cannot change the tenant"):
                await conn.execute(text("SELECT * FROM settings.read_preferences(:t)"), {"t": other})
        # On its own, a read may name any tenant: the setting lives for that call only
        # (that the pooled connection keeps none is tested in the settings tenancy tests).
        assert await db.read(READ_PREFERENCES, other) == []
    finally:
        await db.dispose()


def test_a_tenant_read_is_declared_by_schema_qualified_name_and_called_with_its_arguments() -> None:
    with pytest.raises(ValueError, match="schema-qualified"):
        TenantRead("read_preferences; DROP TABLE x", ())
    declared = TenantRead("tests.two_arguments", ("uuid", "integer"))
    TenantRead.ALL.remove(declared)  # not a function the migrations create
    assert declared.sql == "SELECT * FROM tests.two_arguments($1, $2, $3)"


async def test_a_read_with_the_wrong_number_of_arguments_is_refused_before_the_database(
    database: RunDatabase,
) -> None:
    db = Database.connect(database.runtime_url("settings"), pool_size=1)
    try:
        with pytest.raises(TypeError, match="takes 0 arguments"):
            await db.read(READ_PREFERENCES, uuid.uuid4(), "extra")
        assert db.reads.open == 0
    finally:
        await db.dispose()
