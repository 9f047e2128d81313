"""The connections tenant reads run on: bounded, waited for, never lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.config import to_asyncpg_url
from services.core.db import Database
from services.core.errors import Unavailable
from tests.support import RunDatabase

READ = "settings.read_preferences"


@asynccontextmanager
async def reads_blocked(database: RunDatabase) -> AsyncIterator[None]:
    """Until the block ends, every read of settings waits on a table lock."""
    admin = create_async_engine(to_asyncpg_url(database.admin_url))
    try:
        async with admin.begin() as conn:
            await conn.execute(text("LOCK TABLE settings.account_settings IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        await admin.dispose()


async def backends(database: RunDatabase, application_name: str) -> int:
    admin = create_async_engine(to_asyncpg_url(database.admin_url))
    try:
        async with admin.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                        {"n": application_name},
                    )
                ).scalar_one()
            )
    finally:
        await admin.dispose()


def connect(database: RunDatabase, *, size: int, timeout: float = 5.0) -> tuple[Database, str]:
    name = f"reads-{uuid.uuid4().hex[:8]}"
    db = Database.connect(
        database.runtime_url("settings"),
        pool_size=1,
        read_pool_size=size,
        pool_timeout=timeout,
        application_name=name,
    )
    return db, name


async def test_concurrent_reads_share_at_most_size_connections(database: RunDatabase) -> None:
    db, name = connect(database, size=2)
    try:
        results = await asyncio.gather(*(db.read(READ, account_id=uuid.uuid4()) for _ in range(20)))
        assert results == [[]] * 20
        assert db.reads.open == 2
        assert await backends(database, name) == 2
    finally:
        await db.dispose()
    assert db.reads.open == 0
    assert await backends(database, name) == 0


async def test_a_read_waits_for_a_connection_then_is_unavailable(database: RunDatabase) -> None:
    db, _ = connect(database, size=1, timeout=0.3)
    try:
        async with reads_blocked(database):
            holder = asyncio.create_task(db.read(READ, account_id=uuid.uuid4()))
            await asyncio.sleep(0.2)  # holds the only connection, waiting on the lock
            with pytest.raises(Unavailable, match="no database connection free"):
                await db.read(READ, account_id=uuid.uuid4())
            assert not holder.done()
        # The lock is gone: the held read finishes and its connection serves the next.
        assert await holder == []
        assert await db.read(READ, account_id=uuid.uuid4()) == []
        assert db.reads.open == 1
    finally:
        await db.dispose()


async def test_a_cancelled_read_closes_its_connection_and_frees_the_slot(database: RunDatabase) -> None:
    db, name = connect(database, size=1)
    try:
        async with reads_blocked(database):
            cancelled = asyncio.create_task(db.read(READ, account_id=uuid.uuid4()))
            await asyncio.sleep(0.2)
            waiting = asyncio.create_task(db.read(READ, account_id=uuid.uuid4()))
            await asyncio.sleep(0.1)
            cancelled.cancel()  # e.g. the RPC's deadline passed mid-read
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            # Its connection may have stopped mid-protocol: closed, not reused;
            # the waiting read opens a new one in the freed slot.
            await asyncio.sleep(0.2)
            assert db.reads.open == 1
            assert not waiting.done()
        assert await waiting == []
        assert await backends(database, name) == 1
    finally:
        await db.dispose()


async def test_an_error_from_postgresql_keeps_the_connection(database: RunDatabase) -> None:
    db, _ = connect(database, size=1)
    try:
        [before] = await db.reads.fetch("SELECT pg_backend_pid() AS pid")
        # As a read function does for a session that is not there (P0002): the
        # statement fails, its implicit transaction ends, the connection is fine.
        with pytest.raises(asyncpg.NoDataFoundError):
            await db.reads.fetch("DO $$ BEGIN RAISE no_data_found; END $$")
        [after] = await db.reads.fetch("SELECT pg_backend_pid() AS pid")
        assert after["pid"] == before["pid"]
    finally:
        await db.dispose()


async def test_after_dispose_reads_are_unavailable(database: RunDatabase) -> None:
    db, _ = connect(database, size=1)
    await db.read(READ, account_id=uuid.uuid4())
    await db.dispose()
    assert db.reads.open == 0
    with pytest.raises(Unavailable):
        await db.read(READ, account_id=uuid.uuid4())


async def terminate(database: RunDatabase, pid: int) -> None:
    admin = create_async_engine(to_asyncpg_url(database.admin_url))
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        await admin.dispose()


async def test_a_connection_dropped_while_idle_is_replaced_unseen(database: RunDatabase) -> None:
    db, _ = connect(database, size=1)
    try:
        [first] = await db.reads.fetch("SELECT pg_backend_pid() AS pid")
        await terminate(database, first["pid"])  # e.g. the server restarted
        await asyncio.sleep(0.2)
        assert await db.read(READ, account_id=uuid.uuid4()) == []
        [second] = await db.reads.fetch("SELECT pg_backend_pid() AS pid")
        assert second["pid"] != first["pid"]
        assert db.reads.open == 1
    finally:
        await db.dispose()


async def test_a_connection_dropped_mid_read_is_unavailable_and_replaced(database: RunDatabase) -> None:
    db, _ = connect(database, size=1)
    try:
        [first] = await db.reads.fetch("SELECT pg_backend_pid() AS pid")
        async with reads_blocked(database):
            read = asyncio.create_task(db.read(READ, account_id=uuid.uuid4()))
            await asyncio.sleep(0.2)
            await terminate(database, first["pid"])
            with pytest.raises(Unavailable, match="retry later"):
                await read
        assert db.reads.open == 0
        assert await db.read(READ, account_id=uuid.uuid4()) == []
        assert db.reads.open == 1
    finally:
        await db.dispose()
