"""StreamMessage over a real channel: deltas, proposals and the stored reply;
refusals before the first event; a caller going away aborts the model and
leaves a partial reply; a failure mid-stream ends it with the status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.ai import AI, ChatRequest, Prompts, TextDelta, Tier
from services.core.ai.offline import OfflineBackend
from services.core.errors import Unavailable
from tests.sessions.helpers import Caller, sessions_with
from tests.support import Keys, RunDatabase, expect_error, until


def stream(caller: Caller, session: pb.Session, text: str) -> Any:
    return caller.stub.StreamMessage(
        pb.StreamMessageRequest(parent=session.name, message=pb.Message(text=text)), metadata=caller.md
    )


async def test_a_streamed_reply_arrives_in_pieces_and_is_stored(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session(problem="Outlook prompts for a password")
    await me.fact(s, "MFA registration lists the old phone")
    events = [event async for event in stream(me, s, "remember: it started Monday")]
    deltas = [e.text_delta for e in events if e.WhichOneof("event") == "text_delta"]
    proposals = [e.proposal for e in events if e.WhichOneof("event") == "proposal"]
    last = events[-1]
    assert len(deltas) > 2 and last.WhichOneof("event") == "reply"
    assert "".join(deltas) == last.reply.text and '"MFA registration lists the old phone"' in last.reply.text
    assert [p.kind for p in proposals] == [p.kind for p in last.reply.proposals]
    assert all(p.name for p in last.reply.proposals) and not any(p.name for p in proposals)
    assert last.message.text == "remember: it started Monday" and not last.reply.partial
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert [m.name for m in listed.messages] == [last.message.name, last.reply.name]


async def test_refusals_come_before_the_first_event(sessions_channel: grpc.aio.Channel, keys: Keys) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()

    async def first(call: Any) -> Any:
        async for event in call:
            return event

    await expect_error(
        first(stream(me, s, "x" * 8001)), grpc.StatusCode.INVALID_ARGUMENT, field="message.text"
    )
    await expect_error(first(stream(Caller(sessions_channel, keys), s, "hi")), grpc.StatusCode.NOT_FOUND)
    await expect_error(
        first(stream(me.other_user(), s, "hi")),
        grpc.StatusCode.PERMISSION_DENIED,
        reason="NOT_SESSION_ASSIGNEE",
    )


class SlowBackend(OfflineBackend):
    """Writes one piece, then waits (or fails, when told); records whether
    its request was aborted."""

    def __init__(self) -> None:
        self.aborted = asyncio.Event()
        self.fail = False

    async def chat(self, request: ChatRequest, *, tier: Tier, prompts: Prompts) -> AsyncIterator[Any]:
        yield TextDelta("The first piece.\n")
        try:
            if self.fail:
                raise Unavailable(
                    "the AI model is overloaded or failing; retry later", reason="MODEL_UNAVAILABLE"
                )
            await asyncio.sleep(30)
            yield TextDelta("never")
        except asyncio.CancelledError:
            self.aborted.set()
            raise


@pytest.fixture
async def slow(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
    only_this_replica_delivers: None,
) -> AsyncIterator[tuple[grpc.aio.Channel, SlowBackend]]:
    backend = SlowBackend()
    async with (
        sessions_with(
            AI(backend),
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address=library_address,
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield channel, backend


async def test_a_caller_going_away_aborts_the_model_and_leaves_a_partial_reply(
    slow: tuple[grpc.aio.Channel, SlowBackend], keys: Keys
) -> None:
    channel, backend = slow
    me = Caller(channel, keys)
    s = await me.session()
    call = stream(me, s, "what next?")
    first = await call.read()
    assert first.text_delta == "The first piece.\n"
    call.cancel()
    await asyncio.wait_for(backend.aborted.wait(), 5)

    async def stored() -> bool:
        listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
        return len(listed.messages) == 2

    await until(stored, what="the partial reply stored")
    messages = (await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))).messages
    assert messages[1].partial and messages[1].text == "The first piece.\n"


async def test_a_failure_mid_stream_ends_it_with_the_status_and_keeps_what_arrived(
    slow: tuple[grpc.aio.Channel, SlowBackend], keys: Keys
) -> None:
    channel, backend = slow
    backend.fail = True
    me = Caller(channel, keys)
    s = await me.session()
    call = stream(me, s, "what next?")
    assert (await call.read()).text_delta == "The first piece.\n"
    await expect_error(call.read(), grpc.StatusCode.UNAVAILABLE, reason="MODEL_UNAVAILABLE")
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert [m.partial for m in listed.messages] == [False, True]
    assert listed.messages[1].text == "The first piece.\n"
