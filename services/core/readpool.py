"""The driver connections tenant reads run on, and what a tenant read is.

A *tenant read function* (``migrations.tenancy.tenant_read``) sets the tenant
transaction-locally as its own first statement and then reads under
row-level security, all in the call's implicit transaction: one round trip
instead of four (BEGIN, set, read, COMMIT). Each is declared once, as a
:class:`TenantRead`, beside the storage function that calls it (its typed
wrapper); ``tests/migrations`` checks every declaration against the function
the migrations created. :class:`ReadConnections` is the small pool these
reads run on, beside the engine's. See ``bench/README.md`` for what that is
worth.
"""

from __future__ import annotations

import asyncio
import collections
import json
import operator
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.dberrors import is_connection_problem
from services.core.errors import Unavailable

_QUALIFIED_NAME = re.compile(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class TenantRead:
    """A tenant read function as its callers see it: ``function``
    (``schema.name``) and the PostgreSQL types of its arguments after
    ``p_tenant uuid``. Every declaration is registered (``ALL``) so a test
    can hold each against the database the migrations built."""

    function: str
    arguments: tuple[str, ...]
    sql: str = field(init=False, repr=False)

    ALL: ClassVar[list[TenantRead]] = []

    def __post_init__(self) -> None:
        if not _QUALIFIED_NAME.fullmatch(self.function):
            raise ValueError(f"not a schema-qualified function name: {self.function!r}")
        placeholders = ", ".join(f"${i}" for i in range(1, len(self.arguments) + 2))
        object.__setattr__(self, "sql", f"SELECT * FROM {self.function}({placeholders})")
        TenantRead.ALL.append(self)


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
            if is_connection_problem(exc):
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


def driver_connect(engine: AsyncEngine, application_name: str) -> Connect:
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
