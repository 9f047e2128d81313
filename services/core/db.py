"""Database access: one async engine per service, one transaction per RPC.

:meth:`Database.transaction` opens the RPC's transaction and makes the tenant
setting its first statement, transaction-local (``set_config(..., true)``,
the id bound as a parameter). Row-level security reads it through
``tenancy.current_account_id()``; when the transaction ends PostgreSQL drops
the setting, so a pooled connection never carries a tenant to the next
request, even after a failure. Storage functions receive the connection and
never commit.

Hot reads use :meth:`Database.direct`: the same tenant transaction on the
driver's own connection (taken from the same pool), running :class:`Query`
statements — SQLAlchemy Core compiled once to the driver's SQL — so that a
read pays for the round trips and not for the execution layer above them
(~0.9 ms → ~0.35 ms of CPU for a get-session transaction, see the README's
benchmark section).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.core.auth import current_principal
from services.core.errors import Unavailable

_SET_TENANT = text("SELECT set_config('app.current_account_id', :account_id, true)")
_SET_TENANT_DIRECT = "SELECT set_config('app.current_account_id', $1, true)"
_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class Record(asyncpg.Record):  # type: ignore[misc]  # asyncpg is untyped
    """A row of the direct path, readable by attribute like SQLAlchemy's rows,
    so one converter serves both paths."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Query:
    """A SQLAlchemy Core statement compiled once to the driver's SQL.

    Every value is passed by its bind parameter's name (``bindparam("id")``).
    """

    __slots__ = ("_names", "sql")

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql: str = str(compiled)
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def _args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self._names]

    async def one_or_none(self, conn: asyncpg.Connection, **values: Any) -> Record | None:
        row: Record | None = await conn.fetchrow(self.sql, *self._args(values), record_class=Record)
        return row

    async def all(self, conn: asyncpg.Connection, **values: Any) -> list[Record]:
        rows: list[Record] = await conn.fetch(self.sql, *self._args(values), record_class=Record)
        return rows


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

    @asynccontextmanager
    async def direct(self, account_id: uuid.UUID | None = None) -> AsyncIterator[asyncpg.Connection]:
        """The same tenant transaction as :meth:`transaction`, on the driver's
        connection, for :class:`Query` statements on hot paths."""
        async with _unavailable_when_down(), self.engine.connect() as conn:
            driver: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
            try:
                async with driver.transaction():
                    await driver.execute(_SET_TENANT_DIRECT, _account(account_id))
                    yield driver
            finally:
                if driver.is_closed():
                    await conn.invalidate()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _account(account_id: uuid.UUID | None) -> str:
    return str(account_id if account_id is not None else current_principal().account_id)


@asynccontextmanager
async def _unavailable_when_down() -> AsyncIterator[None]:
    """Pool exhaustion and an unreachable or refusing server are UNAVAILABLE (retry later)."""
    try:
        yield
    except PoolTimeout as exc:
        raise Unavailable("no database connection free, retry later") from exc
    except (DBAPIError, OSError, TimeoutError, asyncpg.PostgresError) as exc:
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
