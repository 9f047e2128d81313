"""Database access: one async engine per service, one transaction per RPC.

:meth:`Database.transaction` opens the RPC's transaction and makes the tenant
setting its first statement, transaction-local (``set_config(..., true)``,
the id bound as a parameter). Row-level security reads it through
``tenancy.current_account_id()``; when the transaction ends PostgreSQL drops
the setting, so a pooled connection never carries a tenant to the next
request, even after a failure. Storage functions receive the connection and
never commit.

Hot reads use :meth:`Database.read`: one call of a *tenant read function*
(``migrations.tenancy.tenant_read``), which sets the tenant transaction-locally
as its own first statement and then reads under row-level security, all in
the call's implicit transaction: one round trip instead of four (BEGIN, set,
read, COMMIT), on the driver's connection from the same pool. See the README's
benchmark section for what that is worth.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from services.core.auth import current_principal
from services.core.errors import Unavailable

_SET_TENANT = text("SELECT set_config('app.current_account_id', :account_id, true)")
_QUALIFIED_NAME = re.compile(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*")


class Record(asyncpg.Record):  # type: ignore[misc]  # asyncpg is untyped
    """A row of :meth:`Database.read`, readable by attribute like SQLAlchemy's rows,
    so one converter serves both paths."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Database:
    """The service's engine (its own login role) and its transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout: float = 5.0,
        application_name: str = "flowpilot",
    ) -> Database:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=False,
            connect_args={"server_settings": {"application_name": application_name}},
        )
        return cls(engine)

    @asynccontextmanager
    async def transaction(self, account_id: uuid.UUID | None = None) -> AsyncIterator[AsyncConnection]:
        """One transaction for ``account_id`` (default: the caller's account).

        Commits when the block ends normally and rolls back when it raises.
        """
        async with _unavailable_when_down(), self.engine.begin() as conn:
            await conn.execute(_SET_TENANT, {"account_id": _account(account_id)})
            yield conn

    async def read(self, function: str, *args: Any, account_id: uuid.UUID | None = None) -> list[Record]:
        """Every row of the tenant read function ``function`` (``schema.name``)
        for ``account_id`` (default: the caller's account), which is passed as
        its first argument; ``args`` follow."""
        async with _unavailable_when_down():
            # The pool's raw connection: a third of the cost of a Core connection
            # around it. It is checked in (or, when broken, invalidated) inside a
            # greenlet, as the async pool expects.
            pooled = await self.engine.raw_connection()
            driver: asyncpg.Connection = pooled.driver_connection
            try:
                rows: list[Record] = await driver.fetch(
                    _read_sql(function, len(args)),
                    account_id if account_id is not None else current_principal().account_id,
                    *args,
                    record_class=Record,
                )
                return rows
            finally:
                await greenlet_spawn(pooled.invalidate if driver.is_closed() else pooled.close)

    async def dispose(self) -> None:
        await self.engine.dispose()


@functools.cache
def _read_sql(function: str, arguments: int) -> str:
    if not _QUALIFIED_NAME.fullmatch(function):
        raise ValueError(f"not a schema-qualified function name: {function!r}")
    placeholders = ", ".join(f"${i}" for i in range(1, arguments + 2))
    return f"SELECT * FROM {function}({placeholders})"


def _account(account_id: uuid.UUID | None) -> str:
    return str(account_id if account_id is not None else current_principal().account_id)


@asynccontextmanager
async def _unavailable_when_down() -> AsyncIterator[None]:
    """Pool exhaustion and an unreachable or refusing server are UNAVAILABLE (retry later)."""
    try:
        yield
    except PoolTimeout as exc:
        raise Unavailable("no database connection free, retry later") from exc
    except Exception as exc:  # the driver's, SQLAlchemy's wrapped or its adapted errors
        if _is_connection_problem(exc):
            raise Unavailable("database unavailable, retry later") from exc
        raise


# SQLSTATE classes and codes that mean "not now" rather than "wrong":
# connection exceptions (08), insufficient resources such as too many
# connections (53), and a server shutting down or starting (57P01-57P03).
_RETRYABLE_SQLSTATE = ("08", "53", "57P01", "57P02", "57P03")


def _is_connection_problem(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_RETRYABLE_SQLSTATE)
