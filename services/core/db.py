"""Database access: one async engine per service, one transaction per RPC.

:meth:`Database.transaction` opens the RPC's transaction and makes the tenant
setting its first statement, transaction-local (``set_config(..., true)``,
the id bound as a parameter). Row-level security reads it through
``tenancy.current_account_id()``; when the transaction ends PostgreSQL drops
the setting, so a pooled connection never carries a tenant to the next
request, even after a failure. Storage functions receive the connection and
never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.core.auth import current_principal
from services.core.errors import Unavailable

_SET_TENANT = text("SELECT set_config('app.current_account_id', :account_id, true)")


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
        account = account_id if account_id is not None else current_principal().account_id
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_SET_TENANT, {"account_id": str(account)})
                yield conn
        except PoolTimeout as exc:
            raise Unavailable("no database connection free, retry later") from exc
        except (DBAPIError, OSError, TimeoutError) as exc:
            if _is_connection_problem(exc):
                raise Unavailable("database unavailable, retry later") from exc
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()


def _is_connection_problem(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
