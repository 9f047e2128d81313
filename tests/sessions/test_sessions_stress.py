"""Sessions under database stress, for real: an exclusive table lock held
from another connection (as DDL, VACUUM FULL or REINDEX take it) while
callers keep reading with short deadlines, or with none."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.sessions.v1 import sessions_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai.service import make_ai
from services.core.auth import Role
from services.core.db import Database
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from tests.conftest import service_config_kwargs
from tests.support import Keys, RunDatabase, backends

POOL, READ_POOL = 2, 3


@pytest.fixture
async def stressed(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
) -> AsyncIterator[tuple[str, str]]:
    """A sessions server of its own (small pools, a 1.5 s limit for calls
    without a deadline), and the application name its connections carry."""
    name = f"stress-{uuid.uuid4().hex[:8]}"
    config = SessionsConfig(
        **service_config_kwargs(database, keys, "sessions", service_keys),
        settings_address=settings_address,
        library_address=library_address,
        default_deadline_seconds=1.5,
        db_pool_timeout_seconds=1,
    )
    db = Database.connect(
        config.database_url, pool_size=POOL, read_pool_size=READ_POOL, pool_timeout=1, application_name=name
    )
    server = build_sessions(config, db, ai=make_ai())
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}", name
    finally:
        await server.stop()


async def test_readers_behind_a_table_lock_end_in_time_and_pile_up_nothing(
    stressed: tuple[str, str], database: RunDatabase, keys: Keys
) -> None:
    address, name = stressed
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.ENGINEER)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sessions_pb2_grpc.SessionsServiceStub(channel)
        session = (
            await stub.CreateSession(
                pb.CreateSessionRequest(
                    session=pb.Session(
                        ticket_ref="CW #1", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="VPN drops"
                    )
                ),
                metadata=md,
            )
        ).session
        get = pb.GetSessionRequest(name=session.name)

        async def one(deadline: float | None) -> grpc.StatusCode:
            try:
                await stub.GetSession(get, metadata=md, timeout=deadline)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        admin = create_async_engine(database.admin_url)
        peak, codes = 0, set()
        try:
            async with admin.begin() as conn:
                await conn.execute(text("LOCK TABLE sessions.ai_sessions IN ACCESS EXCLUSIVE MODE"))
                stop = time.monotonic() + 6
                while time.monotonic() < stop:
                    codes |= set(await asyncio.gather(*(one(1.0) for _ in range(8))))
                    peak = max(peak, await backends(database, name))
                # A call without a deadline (grpcurl's default) ends at the service's own limit.
                started = time.monotonic()
                assert await asyncio.wait_for(one(None), 10) is grpc.StatusCode.DEADLINE_EXCEEDED
                assert time.monotonic() - started < 4
        finally:
            await admin.dispose()
        assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}, codes
        assert peak <= POOL + READ_POOL, peak
        # The lock is gone: every call succeeds, on the connections already there.
        assert set(await asyncio.gather(*(one(5.0) for _ in range(8)))) == {grpc.StatusCode.OK}
        assert await backends(database, name) <= POOL + READ_POOL
