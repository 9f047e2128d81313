"""The connections tenant reads run on: bounded, waited for, never lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.config import to_asyncpg_url
from services.core.db import Database, Record
from services.core.errors import Unavailable
from services.settings.storage import READ_PREFERENCES
from tests.support import RunDatabase, backends, until
from tests.support import admin_scalar as as_admin

READ = READ_PREFERENCES
BACKEND_PID = "SELECT pg_backend_pid() AS pid"


@asynccontextmanager
async def reads(
    database: RunDatabase, *, size: int, wait_seconds: float = 5.0
) -> AsyncIterator[tuple[Database, str]]:
    """The settings role's database with ``size`` read connections, disposed at
    the end, and the ``application_name`` its connections carry (unique)."""
    name = f"reads-{uuid.uuid4().hex[:8]}"
    db = Database.connect(
        database.runtime_url("settings"),
        pool_size=1,
        read_pool_size=size,
        pool_timeout=wait_seconds,
        application_name=name,
    )
    try:
        yield db, name
    finally:
        await db.dispose()


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


async def lock_waiters(
    database: RunDatabase, name: str, *, count: int = 1, besides: Collection[int] = (), seconds: float = 10.0
) -> list[int]:
    """The pids of ``name``'s backends waiting on a lock (behind :func:`reads_blocked`),
    as soon as there are ``count`` of them not in ``besides``; polled, bounded."""
    admin = create_async_engine(to_asyncpg_url(database.admin_url), isolation_level="AUTOCOMMIT")
    waiting = text(
        "SELECT pid FROM pg_stat_activity WHERE application_name = :n AND wait_event_type = 'Lock' ORDER BY pid"
    )
    pids: list[int] = []
    try:
        async with admin.connect() as conn:  # autocommit: pg_stat_activity read anew each time

            async def found() -> bool:
                nonlocal pids
                pids = [
                    pid for pid in (await conn.execute(waiting, {"n": name})).scalars() if pid not in besides
                ]
                return len(pids) == count

            await until(found, what=f"{count} backend(s) of {name} waiting on the lock", seconds=seconds)
    finally:
        await admin.dispose()
    return pids


async def read(db: Database) -> list[Any]:
    return await db.read(READ, uuid.uuid4())


async def test_concurrent_reads_share_at_most_size_connections(database: RunDatabase) -> None:
    async with reads(database, size=2) as (db, name):
        assert await asyncio.gather(*(read(db) for _ in range(20))) == [[]] * 20
        assert db.reads.open == 2
        assert await backends(database, name) == 2
    assert db.reads.open == 0
    assert await backends(database, name) == 0


async def test_a_read_waits_for_a_connection_then_is_unavailable(database: RunDatabase) -> None:
    async with reads(database, size=1, wait_seconds=0.3) as (db, name):
        async with reads_blocked(database):
            holder = asyncio.create_task(read(db))
            await lock_waiters(database, name)  # holds the only connection, waiting on the lock
            with pytest.raises(Unavailable, match="no database connection free"):
                await read(db)
            assert not holder.done()
        # The lock is gone: the held read finishes and its connection serves the next.
        assert await holder == []
        assert await read(db) == []
        assert db.reads.open == 1


async def test_a_cancelled_read_cancels_its_query_before_its_connection_is_reused(
    database: RunDatabase,
) -> None:
    async with reads(database, size=1) as (db, name):
        [before] = await db.reads.fetch(BACKEND_PID)
        async with reads_blocked(database):
            cancelled = asyncio.create_task(read(db))
            await lock_waiters(database, name)
            waiting = asyncio.create_task(read(db))
            await until(
                lambda: db.reads.stats().waiting == 1, what="the second read queued for the connection"
            )
            cancelled.cancel()  # e.g. the RPC's deadline passed mid-read
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            # The query was cancelled in PostgreSQL (not left waiting on the
            # lock behind a closed socket), and the connection serves the
            # waiting read: still one backend, the same one.
            await until(
                lambda: db.reads.stats().waiting == 0, what="the connection handed to the second read"
            )
            await lock_waiters(database, name)  # the second read's query, now behind the lock
            assert db.reads.open == 1 and not waiting.done()
            assert await backends(database, name) == 1
            waits = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND wait_event_type = 'Lock'"
            assert await as_admin(database, waits, n=name) == 1  # the waiting read only
        assert await waiting == []
        [after] = await db.reads.fetch(BACKEND_PID)
        assert after["pid"] == before["pid"]


async def test_cancelled_reads_behind_a_lock_never_pile_up_backends(database: RunDatabase) -> None:
    """8 readers on short deadlines for several seconds behind an exclusive
    table lock (as DDL, VACUUM FULL or REINDEX take): the role never has more
    backends than the pool's size, and every read succeeds once the lock is gone."""
    async with reads(database, size=3) as (db, name):
        peak = 0
        async with reads_blocked(database):
            deadline = asyncio.get_running_loop().time() + 4
            while asyncio.get_running_loop().time() < deadline:
                results = await asyncio.gather(
                    *(asyncio.wait_for(read(db), 0.3) for _ in range(8)), return_exceptions=True
                )
                assert all(isinstance(r, TimeoutError | Unavailable) for r in results), results
                peak = max(peak, await backends(database, name))
        assert peak <= 3
        assert await asyncio.gather(*(read(db) for _ in range(8))) == [[]] * 8
        assert await backends(database, name) <= 3


async def test_an_error_from_postgresql_keeps_the_connection(database: RunDatabase) -> None:
    async with reads(database, size=1) as (db, _):
        [before] = await db.reads.fetch(BACKEND_PID)
        # As a read function does for a session that is not there (P0002): the
        # statement fails, its implicit transaction ends, the connection is fine.
        with pytest.raises(asyncpg.NoDataFoundError):
            await db.reads.fetch("DO $$ BEGIN RAISE no_data_found; END $$")
        [after] = await db.reads.fetch(BACKEND_PID)
        assert after["pid"] == before["pid"]


async def test_after_dispose_reads_are_unavailable(database: RunDatabase) -> None:
    async with reads(database, size=1) as (db, _):
        await read(db)
    assert db.reads.open == 0
    with pytest.raises(Unavailable):
        await read(db)


async def test_a_connection_dropped_while_idle_is_replaced_unseen(database: RunDatabase) -> None:
    async with reads(database, size=1) as (db, _):
        [first] = await db.reads.fetch(BACKEND_PID)
        await as_admin(database, "SELECT pg_terminate_backend(:p)", p=first["pid"])  # e.g. a restart
        # The read below finds the connection closed where it lay idle.
        idle = list(db.reads._idle)
        await until(
            lambda: bool(idle) and all(c.is_closed() for c in idle), what="the idle connection closed"
        )
        assert await read(db) == []
        [second] = await db.reads.fetch(BACKEND_PID)
        assert second["pid"] != first["pid"]
        assert db.reads.open == 1


async def test_a_connection_dropped_mid_read_is_retried_once_on_a_fresh_one(database: RunDatabase) -> None:
    async with reads(database, size=1) as (db, name):
        [first] = await db.reads.fetch(BACKEND_PID)
        async with reads_blocked(database):
            pending = asyncio.create_task(read(db))
            assert await lock_waiters(database, name) == [first["pid"]]
            await as_admin(database, "SELECT pg_terminate_backend(:p)", p=first["pid"])
            await lock_waiters(database, name, besides={first["pid"]})  # the retry, on a new connection
            assert not pending.done() and db.reads.open == 1
        assert await pending == []
        [second] = await db.reads.fetch(BACKEND_PID)
        assert second["pid"] != first["pid"]


async def test_a_read_whose_connection_fails_twice_is_unavailable(database: RunDatabase) -> None:
    async with reads(database, size=1) as (db, name):
        async with reads_blocked(database):
            pending = asyncio.create_task(read(db))
            terminated: set[int] = set()
            for _ in range(2):  # the read's connection, then the one it retried on
                [pid] = await lock_waiters(database, name, besides=terminated)
                await as_admin(database, "SELECT pg_terminate_backend(:p)", p=pid)
                terminated.add(pid)
            with pytest.raises(Unavailable, match="retry later"):
                await pending
        assert db.reads.open == 0
        assert await read(db) == []


async def test_rows_read_by_attribute_the_same_before_and_after_their_columns_become_properties(
    database: RunDatabase,
) -> None:
    query = "SELECT 1 AS number, 'x' AS text, 2 AS keys, NULL::int AS nothing"
    async with reads(database, size=1) as (db, _):
        first, later = (await db.reads.fetch(query))[0], (await db.reads.fetch(query))[0]
        other = (await db.reads.fetch("SELECT 3 AS number"))[0]
    assert type(first) is Record  # found through __getattr__
    assert type(later) is not Record and isinstance(later, Record)
    assert isinstance(vars(type(later))["number"], property)
    for row in (first, later):
        assert (row.number, row.text, row.nothing) == (1, "x", None)
        assert row["keys"] == 2 and list(row.keys()) == ["number", "text", "keys", "nothing"]
        with pytest.raises(AttributeError):
            _ = row.missing
    assert other.number == 3 and type(other) is Record  # another statement, its own class
