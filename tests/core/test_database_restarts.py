"""PostgreSQL restarted for real under load (a server of this test's own,
``pg_ctl restart -m fast``): every failure a caller sees is UNAVAILABLE, and
the service recovers without a restart of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pgserver
import pytest
from sqlalchemy import make_url, text

from services.core.config import to_asyncpg_url
from services.core.db import Database
from services.core.errors import Unavailable
from services.settings.storage import READ_PREFERENCES
from tests.support import RunDatabase, own_postgres, pg_ctl


@pytest.fixture(scope="module")
async def restartable() -> AsyncIterator[tuple[RunDatabase, pgserver.PostgresServer]]:
    async with own_postgres("fpr") as found:
        yield found


async def test_reads_and_transactions_across_fast_restarts_are_only_ever_unavailable(
    restartable: tuple[RunDatabase, pgserver.PostgresServer],
) -> None:
    database, server = restartable
    url = make_url(to_asyncpg_url(database.admin_url)).set(username=database.roles.runtime("settings"))
    db = Database.connect(
        url.render_as_string(hide_password=False), pool_size=3, read_pool_size=3, pool_timeout=2
    )
    account = uuid.uuid4()
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            try:
                await db.read(READ_PREFERENCES, account)
                outcome = "ok"
            except Unavailable:
                outcome = "unavailable"
                await asyncio.sleep(0.02)
            except Exception as exc:  # anything else is what this test exists to catch
                outcome = f"{type(exc).__name__}: {exc}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def writer() -> None:
        while not stop.is_set():
            try:
                async with db.transaction(account) as conn:
                    await conn.execute(text("SELECT count(*) FROM settings.account_settings"))
                outcome = "ok"
            except Unavailable:
                outcome = "unavailable"
                await asyncio.sleep(0.02)
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    try:
        workers = [asyncio.create_task(reader()) for _ in range(6)] + [
            asyncio.create_task(writer()) for _ in range(2)
        ]
        for _ in range(3):
            await asyncio.sleep(0.7)
            await asyncio.to_thread(pg_ctl, server, "restart")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        assert set(outcomes) <= {"ok", "unavailable"}, outcomes
        assert outcomes.get("unavailable", 0) > 0  # the restarts were felt
        # Recovered, with no restart of the service's own.
        assert await db.read(READ_PREFERENCES, account) == []
    finally:
        stop.set()
        await db.dispose()
