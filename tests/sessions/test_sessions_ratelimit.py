"""The per-account limit on model calls, over a real channel: RESOURCE_EXHAUSTED
with RetryInfo past the burst, nothing written for a refused call, and cached
previews spend nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai import AI
from services.core.ai.offline import OfflineBackend
from services.core.ratelimit import TokenBuckets
from tests.sessions.helpers import Caller, sessions_with
from tests.support import Keys, RunDatabase, failure, retry_delay


class Clock:
    """A monotonic clock in seconds that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limited(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
) -> AsyncIterator[tuple[grpc.aio.Channel, Clock]]:
    """A sessions server whose accounts may make 2 model calls, then one per 10 s."""
    clock = Clock()
    ai = AI(OfflineBackend(), limiter=TokenBuckets(per_minute=6, burst=2, clock=clock))
    async with (
        sessions_with(
            ai,
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address=library_address,
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield channel, clock


def waited(error: grpc.aio.AioRpcError) -> float | None:
    return retry_delay(rpc_status.from_call(error))


async def _rows(database: RunDatabase, session: pb.Session) -> tuple[int, int]:
    """(fixes, cached previews) of ``session``, read past RLS as the administrator."""
    engine = create_async_engine(database.admin_url)
    try:
        async with engine.connect() as conn:
            params = {"id": uuid.UUID(session.name.split("/")[1])}
            fixes = await conn.scalar(
                text("SELECT count(*) FROM sessions.session_suggested_fixes WHERE session_id = :id"), params
            )
            previews = await conn.scalar(
                text("SELECT count(*) FROM sessions.note_previews WHERE session_id = :id"), params
            )
    finally:
        await engine.dispose()
    return int(fixes or 0), int(previews or 0)


async def test_model_calls_past_the_burst_are_refused_with_retry_info(
    limited: tuple[grpc.aio.Channel, Clock], keys: Keys, database: RunDatabase
) -> None:
    channel, clock = limited
    me = Caller(channel, keys)
    s = await me.session()
    await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    note = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert not note.cached
    before, rows = await me.get(s), await _rows(database, s)
    assert rows == (1, 1)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    error = failure(refused.value)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "AI_RATE_LIMITED"
    assert waited(refused.value) == pytest.approx(10.0)
    assert await me.get(s) == before and await _rows(database, s) == rows

    # The note of an unchanged session is cached: it spends nothing.
    again = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert again.cached and again.text == note.text

    # Another account has its own bucket.
    other = Caller(channel, keys)
    await other.call("SuggestFix", pb.SuggestFixRequest(parent=(await other.session()).name))

    clock.now += 4
    with pytest.raises(grpc.aio.AioRpcError) as still:
        await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    assert waited(still.value) == pytest.approx(6.0)
    clock.now += 6
    await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    assert await _rows(database, s) == (2, 1)
