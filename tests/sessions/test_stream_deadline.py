"""A stream called without a deadline ends at the service's own, as
DEADLINE_EXCEEDED, with what arrived stored: the timer runs in the stream's
awaits, never across a message being written."""

from __future__ import annotations

import asyncio

import grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.ai import AI
from tests.sessions.helpers import Caller, sessions_with
from tests.sessions.test_copilot_stream import SlowBackend, stream
from tests.support import Keys, RunDatabase, expect_error, until


async def test_a_stream_without_a_deadline_ends_at_the_services_own(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
    only_this_replica_delivers: None,
) -> None:
    backend = SlowBackend()  # one piece, then it waits 30 s
    async with (
        sessions_with(
            AI(backend),
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address=library_address,
            default_deadline_seconds=1.0,
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        me = Caller(channel, keys)
        s = await me.session()
        call = stream(me, s, "what next?")  # no timeout: the service's default applies
        assert (await call.read()).text_delta == "The first piece.\n"
        await asyncio.wait_for(expect_error(call.read(), grpc.StatusCode.DEADLINE_EXCEEDED), timeout=10)
        await asyncio.wait_for(backend.aborted.wait(), 5)

        async def stored() -> bool:
            listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
            return len(listed.messages) == 2 and listed.messages[1].partial

        await until(stored, what="the partial reply stored")
