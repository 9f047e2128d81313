"""Database access: one async engine per service, one transaction per RPC.

:meth:`Database.transaction` opens the RPC's transaction for the account its
caller names (every call names one: there is no ambient default) and makes the
tenant setting its first statement, transaction-local (``set_config(..., true)``,
the id bound as a parameter). Row-level security reads it through
``tenancy.current_account_id()``; when the transaction ends PostgreSQL drops
the setting, so a pooled connection never carries a tenant to the next
request, even after a failure. Storage functions receive the connection and
never commit.

Hot reads use :meth:`Database.read`: one call of a *tenant read function*
(``migrations.tenancy.tenant_read``), which sets the tenant transaction-locally
as its own first statement and then reads under row-level security, all in
the call's implicit transaction: one round trip instead of four (BEGIN, set,
read, COMMIT), on a driver connection of :class:`ReadConnections`. See
``bench/README.md`` for what that is worth.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import operator
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from services.core.errors import Unavailable

_SET_TENANT = text("SELECT set_config('app.current_account_id', :account_id, true)")
_QUALIFIED_NAME = re.compile(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*")


class Record(asyncpg.Record):  # type: ignore[misc]  # asyncpg is untyped
    """A row of :meth:`Database.read`, readable by attribute like SQLAlchemy's rows,
    so one converter serves both paths.

    ``__getattr__`` (Python, after a failed lookup) costs ~0.7 µs an attribute,
    11 µs to convert a fact; so once a statement has returned rows, its later
    rows are of a subclass whose columns are properties (:meth:`with_columns`).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def with_columns(cls, names: Iterable[str]) -> type[Record]:
        """A subclass reading each column by name through a C item getter
        (~0.05 µs); a column named like a method of the record (``keys``,
        ``get``…) stays readable by key only, as on the base class."""
        columns = {n: property(operator.itemgetter(n)) for n in names if not hasattr(cls, n)}
        return type("Record", (cls,), columns)


Connect = Callable[[], Awaitable[asyncpg.Connection]]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool at one moment, for metrics: connections checked out and idle,
    callers waiting for one, and the most it opens."""

    used: int
    idle: int
    waiting: int
    size: int


class ReadConnections:
    """The driver connections tenant reads run on, beside the engine's pool.

    A tenant read is one statement in its own implicit transaction and leaves
    nothing behind on its connection (its tenant setting ends with that
    transaction), so there is nothing to reset between reads: a read takes an
    idle connection, or opens one while fewer than ``size`` are open, or waits
    up to ``timeout`` seconds for one (then UNAVAILABLE), and puts it back.
    That checkout costs a few microseconds; SQLAlchemy's pool (a greenlet per
    check-in) costs about 70 µs and asyncpg's about 50 µs, which on a
    get-session is a tenth of the server's CPU. A call cut short by anything
    but an error from PostgreSQL (a cancelled RPC, a dropped socket) closes its
    connection instead of putting it back: it may have stopped mid-protocol.
    A connection the server closed while it sat idle is replaced unseen.
    """

    def __init__(self, connect: Connect, *, size: int, timeout: float) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._idle: list[asyncpg.Connection] = []
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection]] = collections.deque()
        self._open = 0
        self._closed = False
        self._record_classes: dict[str, type[Record]] = {}  # by statement: a few per service
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        return self._open

    def stats(self) -> PoolStats:
        idle = len(self._idle)
        waiting = sum(not waiter.done() for waiter in self._waiters)
        return PoolStats(used=self._open - idle, idle=idle, waiting=waiting, size=self._size)

    async def fetch(self, query: str, *args: Any) -> list[Record]:
        """The rows of ``query``. A connection that fails at the connection
        level (dropped, closing, mid-restart) is replaced and the read tried
        once more on a fresh one (a tenant read changes nothing, so a retry is
        always safe); a second failure is UNAVAILABLE."""
        try:
            return await self._fetch_once(query, args)
        except _ConnectionLost:
            pass
        try:
            return await self._fetch_once(query, args)
        except _ConnectionLost as lost:
            raise Unavailable("database unavailable, retry later") from lost.__cause__

    async def _fetch_once(self, query: str, args: tuple[Any, ...]) -> list[Record]:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.is_closed():
            if conn is not None:
                self._discard(conn)  # dropped while idle (e.g. the server restarted)
            conn = await self._acquire()
        try:
            rows: list[Record] = await conn.fetch(
                query, *args, record_class=self._record_classes.get(query, Record)
            )
        except asyncpg.PostgresError as exc:
            if _is_connection_problem(exc):
                self._discard(conn)
                raise _ConnectionLost from exc
            self._release(conn)  # the statement failed; its implicit transaction is over
            raise
        except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
            self._discard(conn)  # the connection, not the statement, failed
            raise _ConnectionLost from exc
        except BaseException:
            # Cut short (a cancelled RPC): the query may still be running on
            # the server. Cancel it there before the slot is free again.
            self._settle_later(conn)
            raise
        self._release(conn)
        if rows and query not in self._record_classes:
            self._record_classes[query] = Record.with_columns(rows[0].keys())
        return rows

    def _settle_later(self, conn: asyncpg.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(conn))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, conn: asyncpg.Connection) -> None:
        """Cancels a cut-short read's query on the server, then reuses its
        connection; the connection keeps its slot meanwhile, so a process never
        has more connections (or backends) than its pool size. A connection
        that does not come back within the timeout is closed (the server's
        statement and lock timeouts end what still runs)."""
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.sleep(0)  # asyncpg requests the cancel in a callback
                pending = list(getattr(conn, "_cancellations", ()))  # asyncpg's cancel request
                if pending:
                    await asyncio.wait(pending)
                await conn.fetchval("SELECT 1")  # answered only once the cancelled query is over
        except BaseException:
            self._discard(conn)
            return
        self._release(conn)

    async def close(self) -> None:
        """Closes the idle connections now and the others as their calls end."""
        self._closed = True
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=self._timeout)
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        self._wake(len(self._waiters))
        await asyncio.gather(*(conn.close() for conn in idle), return_exceptions=True)

    async def _acquire(self) -> asyncpg.Connection:
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    if self._closed:
                        raise Unavailable("the service is shutting down, retry later")
                    if self._idle:
                        conn = self._idle.pop()
                        if not conn.is_closed():
                            return conn
                        self._discard(conn)
                        continue
                    if self._open < self._size:
                        self._open += 1
                        try:
                            return await self._connect()
                        except BaseException:
                            self._open -= 1
                            self._wake(1)  # someone waiting may try the freed slot
                            raise
                    waiter: asyncio.Future[asyncpg.Connection] = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    try:
                        return await waiter
                    except _SlotFreed:
                        continue
                    except BaseException:
                        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                            self._release(waiter.result())  # handed over as this call was cancelled
                        raise
        except TimeoutError:
            raise Unavailable("no database connection free, retry later") from None

    def _release(self, conn: asyncpg.Connection) -> None:
        if self._closed or conn.is_closed():
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        self._open -= 1
        self._wake(1)

    def _wake(self, count: int) -> None:
        """Lets ``count`` waiters look again (for a free slot, or to see the close)."""
        while count and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(_SlotFreed())
                count -= 1


class _ConnectionLost(Exception):
    """A read failed with its connection (the cause says how); it may be retried."""


class _SlotFreed(Exception):
    """Wakes a waiter to look again: a slot was freed rather than a connection handed over."""


def _driver_connect(engine: AsyncEngine, application_name: str) -> Connect:
    """Opens driver connections with the engine's parameters (its URL) and JSON
    decoded to Python values, as rows read through the engine have it, so one
    converter reads rows of either path."""
    _, params = engine.dialect.create_connect_args(engine.url)
    for sqlalchemy_only in (
        "prepared_statement_cache_size",
        "prepared_statement_name_func",
        "async_creator_fn",
    ):
        params.pop(sqlalchemy_only, None)

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(**params, server_settings={"application_name": application_name})
        try:
            for type_name in ("json", "jsonb"):
                await conn.set_type_codec(
                    type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
                )
        except BaseException:
            conn.terminate()
            raise
        return conn

    return connect


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
            _driver_connect(engine, application_name), size=read_pool_size, timeout=pool_timeout
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
            async with _unavailable_when_down(), self.engine.begin() as conn:
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

    async def read(self, function: str, account_id: uuid.UUID, *args: Any) -> list[Record]:
        """Every row of the tenant read function ``function`` (``schema.name``)
        for the tenant ``account_id``, which is passed as its first argument;
        ``args`` follow."""
        async with _unavailable_when_down():
            return await self.reads.fetch(_read_sql(function, len(args)), account_id, *args)

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()


@functools.cache
def _read_sql(function: str, arguments: int) -> str:
    if not _QUALIFIED_NAME.fullmatch(function):
        raise ValueError(f"not a schema-qualified function name: {function!r}")
    placeholders = ", ".join(f"${i}" for i in range(1, arguments + 2))
    return f"SELECT * FROM {function}({placeholders})"


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
        timeout = _TIMEOUTS.get(_sqlstate(exc) or "")
        if timeout is not None:
            raise Unavailable(timeout[1], reason=timeout[0]) from exc
        raise


# The database's own backstops (the role's lock_timeout and statement_timeout):
# the work waited too long, retry later.
_TIMEOUTS = {
    "55P03": ("LOCK_TIMEOUT", "the data is locked (e.g. by maintenance); retry later"),
    "57014": ("STATEMENT_TIMEOUT", "the database took too long; retry later"),
}


def _sqlstate(exc: BaseException) -> str | None:
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


# SQLSTATE classes and codes that mean "not now" rather than "wrong":
# connection exceptions (08), insufficient resources such as too many
# connections (53), and a server shutting down or starting (57P01-57P03).
_RETRYABLE_SQLSTATE = ("08", "53", "57P01", "57P02", "57P03")


def _is_connection_problem(exc: BaseException) -> bool:
    if isinstance(
        exc,
        (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ),
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    driver = getattr(error, "__cause__", None)  # asyncpg's own, under SQLAlchemy's adapted error
    if isinstance(driver, (asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
        return True
    sqlstate = _sqlstate(exc)
    return sqlstate is not None and sqlstate.startswith(_RETRYABLE_SQLSTATE)
