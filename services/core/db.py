"""Database access: one async engine per service, one transaction per RPC.

:meth:`Database.transaction` opens the RPC's transaction for the account its
caller names (every call names one: there is no ambient default) and makes the
tenant setting its first statement, transaction-local (``set_config(..., true)``,
the id bound as a parameter). Row-level security reads it through
``tenancy.current_account_id()``; when the transaction ends PostgreSQL drops
the setting, so a pooled connection never carries a tenant to the next
request, even after a failure. Storage functions receive the connection and
never commit.

Hot reads use :meth:`Database.read`: one call of a declared tenant read
function (``services.core.readpool.TenantRead``) on the read pool.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from services.core.dberrors import unavailable_when_down
from services.core.readpool import PoolStats, ReadConnections, Record, TenantRead, driver_connect

__all__ = ["Database", "PoolStats", "Record", "TenantRead"]

_SET_TENANT = text("SELECT set_config('app.current_account_id', :account_id, true)")


class Database:
    """The service's engine (its own login role), its transactions and its reads."""

    def __init__(self, engine: AsyncEngine, reads: ReadConnections) -> None:
        self.engine = engine
        self.reads = reads
        self._transactions_waiting = 0  # for metrics: callers waiting for a pooled connection

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout: float = 5.0,
        read_pool_size: int = 10,
        application_name: str = "flowpilot",
    ) -> Database:
        """``pool_size`` connections for transactions, ``read_pool_size`` for tenant reads."""
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=False,
            connect_args={"server_settings": {"application_name": application_name}},
            # JSONB text as UTF-8, not \uXXXX escapes (up to 3 times the size for non-ASCII text).
            json_serializer=functools.partial(json.dumps, ensure_ascii=False),
        )
        reads = ReadConnections(
            driver_connect(engine, application_name), size=read_pool_size, timeout=pool_timeout
        )
        return cls(engine, reads)

    @asynccontextmanager
    async def transaction(self, account_id: uuid.UUID) -> AsyncIterator[AsyncConnection]:
        """One transaction for the tenant ``account_id`` (always named: work
        for no caller, such as background work, names its account too).

        Commits when the block ends normally and rolls back when it raises.
        """
        self._transactions_waiting += 1
        waiting = True
        try:
            async with unavailable_when_down(), self.engine.begin() as conn:
                self._transactions_waiting -= 1
                waiting = False
                await conn.execute(_SET_TENANT, {"account_id": str(account_id)})
                yield conn
        finally:
            if waiting:
                self._transactions_waiting -= 1

    def pool_stats(self) -> dict[str, PoolStats]:
        """Both pools, for metrics: SQLAlchemy's (transactions) and the tenant reads'."""
        pool = cast(QueuePool, self.engine.pool)
        idle = pool.checkedin()
        return {
            "transactions": PoolStats(
                used=pool.checkedout(),
                idle=idle,
                waiting=self._transactions_waiting,
                size=pool.size(),  # no overflow: Database.connect sets max_overflow=0
            ),
            "reads": self.reads.stats(),
        }

    async def read(self, function: TenantRead, account_id: uuid.UUID, *args: Any) -> list[Record]:
        """Every row of the tenant read ``function`` for the tenant
        ``account_id``, which is passed as its first argument; ``args`` follow,
        one per declared argument."""
        if len(args) != len(function.arguments):
            raise TypeError(f"{function.function} takes {len(function.arguments)} arguments after the tenant")
        async with unavailable_when_down():
            return await self.reads.fetch(function.sql, account_id, *args)

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()
