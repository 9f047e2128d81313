"""The copilot's Anthropic path: recorded SSE streams through the real SDK's
streaming API (text deltas, tool use, a 529 before the first delta, a
failure mid-stream, the caller going away)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import pytest

from services.core.ai import (
    AI,
    ChatRequest,
    Preferences,
    Proposed,
    ReplyDone,
    SessionContext,
    TextDelta,
    Turn,
)
from services.core.ai.anthropic_backend import AnthropicBackend
from services.core.errors import Unavailable
from tests.core.ai.transport import RECORDED, Replay

REQUEST = ChatRequest(
    session=SessionContext(
        ticket_ref="CW #48213",
        title="Outlook keeps prompting",
        problem="Outlook asks for credentials every few minutes.",
        facts=(
            "User replaced phone on Monday",
            "MFA registration lists old phone",
            "password is Hunter2-Secret!9",
        ),
    ),
    history=(Turn("assistant", "Hello"), Turn("user", "It started Monday"), Turn("assistant", "Noted.")),
    question="What next? The admin password is Hunter2-Secret!9",
)


def _ai(replay: Replay) -> AI:
    backend = AnthropicBackend(
        api_key="test-key",
        fast_model="claude-haiku-5-5",
        deep_model="claude-sonnet-5-5",
        max_retries=2,
        timeout_seconds=5.0,
        http_client=replay.client(),
    )
    return AI(backend)


async def _events(ai: AI, request: ChatRequest = REQUEST) -> list[object]:
    return [event async for event in await ai.chat(request, Preferences())]


async def test_text_deltas_and_a_tool_call_stream_through_the_sdk() -> None:
    replay = Replay([(200, "chat_stream_tool_use.sse")])
    events = await _events(_ai(replay))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == (
        'The old phone is still registered ("MFA registration lists old phone").\nCheck the sign-in logs next.'
    )
    [proposed] = [e for e in events if isinstance(e, Proposed)]
    assert proposed.proposal.kind == "lane_item" and proposed.proposal.lane_kind == "check"
    assert proposed.proposal.title == "Read the Entra sign-in logs"
    assert proposed.proposal.tool_call_id == "toolu_01Check"
    done = events[-1]
    assert isinstance(done, ReplyDone)
    assert (done.model, done.tier, done.input_tokens, done.output_tokens) == (
        "claude-haiku-5-5-20260901",
        "fast",
        812,
        64,
    )
    sent = replay.requests[0]
    assert sent["stream"] is True and sent["model"] == "claude-haiku-5-5"
    assert {t["name"] for t in sent["tools"]} == {"propose_fact", "propose_lane_item", "propose_fix"}
    # The session in the system prompt, the conversation as alternating turns
    # starting with the user, the question last; secrets redacted everywhere.
    assert "MFA registration lists old phone" in sent["system"] and "CW #48213" in sent["system"]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][-1]["content"].startswith("What next?")
    assert "Hunter2-Secret!9" not in str(sent)


async def test_overloaded_before_the_first_delta_is_retried() -> None:
    replay = Replay([(529, "overloaded.json"), (200, "chat_stream_tool_use.sse")])
    events = await _events(_ai(replay))
    assert isinstance(events[-1], ReplyDone) and len(replay.requests) == 2


async def test_a_failure_after_the_first_delta_is_not_retried() -> None:
    replay = Replay([(200, "chat_stream_overloaded_midway.sse"), (200, "chat_stream_tool_use.sse")])
    seen: list[object] = []

    async def read() -> None:
        async for event in await _ai(replay).chat(REQUEST, Preferences()):
            seen.append(event)

    with pytest.raises(Unavailable) as failed:
        await read()
    assert failed.value.reason == "MODEL_UNAVAILABLE"
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["The old phone is still registered.\n"]
    assert len(replay.requests) == 1


class _Stalling(httpx2.AsyncByteStream):
    """The first events of a recorded stream, then nothing more until closed."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        await asyncio.Event().wait()  # the model "thinks" forever
        yield b""  # never reached

    async def aclose(self) -> None:
        self.closed.set()


async def test_a_caller_going_away_closes_the_models_stream() -> None:
    recorded = (RECORDED / "chat_stream_overloaded_midway.sse").read_bytes()
    head = recorded[: recorded.index(b"event: error")]  # everything up to the first delta
    body = _Stalling(head)
    requests: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    backend = AnthropicBackend(
        api_key="test-key",
        fast_model="claude-haiku-5-5",
        deep_model="claude-sonnet-5-5",
        max_retries=2,
        timeout_seconds=30.0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    events = await AI(backend).chat(REQUEST, Preferences())
    first = await asyncio.wait_for(anext(aiter(events)), 5)
    assert isinstance(first, TextDelta) and first.text == "The old phone is still registered.\n"
    await cast(Any, events).aclose()  # the caller went away
    await asyncio.wait_for(body.closed.wait(), 5)  # the HTTP stream to the model is closed
    assert len(requests) == 1  # and nothing was retried
