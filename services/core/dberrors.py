"""What a database failure means to a caller: UNAVAILABLE (retry later) for
everything that is "not now" rather than "wrong", for both database paths
(SQLAlchemy's transactions and the driver's tenant reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.core.errors import Unavailable


@asynccontextmanager
async def unavailable_when_down() -> AsyncIterator[None]:
    """Pool exhaustion and an unreachable or refusing server are UNAVAILABLE (retry later)."""
    try:
        yield
    except PoolTimeout as exc:
        raise Unavailable("no database connection free, retry later") from exc
    except Exception as exc:  # the driver's, SQLAlchemy's wrapped or its adapted errors
        if is_connection_problem(exc):
            raise Unavailable("database unavailable, retry later") from exc
        timeout = _TIMEOUTS.get(sqlstate(exc) or "")
        if timeout is not None:
            raise Unavailable(timeout[1], reason=timeout[0]) from exc
        raise


# The database's own backstops (the role's lock_timeout and statement_timeout):
# the work waited too long, retry later.
_TIMEOUTS = {
    "55P03": ("LOCK_TIMEOUT", "the data is locked (e.g. by maintenance); retry later"),
    "57014": ("STATEMENT_TIMEOUT", "the database took too long; retry later"),
}


def sqlstate(exc: BaseException) -> str | None:
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) else None


# SQLSTATE classes and codes that mean "not now" rather than "wrong":
# connection exceptions (08), insufficient resources such as too many
# connections (53), and a server shutting down or starting (57P01-57P03).
_RETRYABLE_SQLSTATE = ("08", "53", "57P01", "57P02", "57P03")


def is_connection_problem(exc: BaseException) -> bool:
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
    state = sqlstate(exc)
    return state is not None and state.startswith(_RETRYABLE_SQLSTATE)
