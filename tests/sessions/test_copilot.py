"""The copilot conversation over a real channel: replies grounded in the
session, stored and listed, proposals pending (nothing written silently),
every error named."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.auth import Role
from services.sessions import copilot
from tests.sessions.helpers import Caller
from tests.support import Keys, expect_error


def send(caller: Caller, session: pb.Session, text: str) -> Any:
    return caller.call(
        "SendMessage", pb.SendMessageRequest(parent=session.name, message=pb.Message(text=text))
    )


async def test_a_reply_is_grounded_in_the_session_and_proposes_without_writing(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys, name="Dana")
    s = await me.session(title="VPN drops", problem="The VPN client disconnects every 10 minutes.")
    await me.fact(s, "The disconnects started after the firewall update")
    await me.fact(s, "Other users on the same site are fine")
    before = await me.get(s)

    answer = await send(me, s, "What should I check next?")
    sent, reply = answer.message, answer.reply
    assert sent.role == pb.MESSAGE_ROLE_USER and sent.text == "What should I check next?"
    assert sent.author == str(me.user) and sent.author_display_name == "Dana"
    assert reply.role == pb.MESSAGE_ROLE_ASSISTANT
    assert reply.name.startswith(f"{s.name}/messages/")
    # Grounded: it quotes the facts it used, newest first, and proposes a check.
    assert '"Other users on the same site are fine"; "The disconnects started after' in reply.text
    assert "Next check I propose:" in reply.text
    assert (
        reply.model == "offline" and reply.tier == "fast" and reply.prompt_version == copilot.PROMPT_VERSION
    )
    assert reply.input_tokens > 0 and reply.output_tokens > 0 and not reply.partial
    assert reply.state_version == before.state_version
    [proposal] = reply.proposals
    assert proposal.kind == pb.PROPOSAL_KIND_LANE_ITEM and proposal.state == pb.PROPOSAL_STATE_PENDING
    assert proposal.lane_item_kind == pb.LANE_ITEM_KIND_CHECK and proposal.title in reply.text
    assert proposal.name.startswith(f"{reply.name}/proposals/")
    # Nothing written silently: the session, its lane and facts are as they were.
    after = await me.get(s)
    assert after.state_version == before.state_version and list(after.lane_items) == list(before.lane_items)

    # Asked to remember something and for a fix: both proposed, neither written.
    answer = await send(me, s, "Remember that the split tunnel setting was changed on Monday; and a fix?")
    kinds = [p.kind for p in answer.reply.proposals]
    assert kinds == [pb.PROPOSAL_KIND_LANE_ITEM, pb.PROPOSAL_KIND_FACT, pb.PROPOSAL_KIND_FIX]
    assert "(I read 2 earlier message(s) of this conversation; 0 older left out.)" in answer.reply.text
    assert (await me.get(s)).state_version == before.state_version
    facts = await me.call("ListFacts", pb.ListFactsRequest(parent=s.name))
    assert len(facts.facts) == 2


async def test_messages_list_oldest_or_newest_first_in_pages(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    for n in range(3):
        await send(me, s, f"question {n}")
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    roles = [m.role for m in listed.messages]
    assert roles == [pb.MESSAGE_ROLE_USER, pb.MESSAGE_ROLE_ASSISTANT] * 3
    assert [m.text for m in listed.messages[::2]] == ["question 0", "question 1", "question 2"]
    assert all(len(m.proposals) == 1 for m in listed.messages[1::2])

    newest: list[pb.Message] = []
    token = ""
    while True:
        page = await me.call(
            "ListMessages",
            pb.ListMessagesRequest(parent=s.name, page_size=4, page_token=token, order_by="create_time desc"),
        )
        newest += page.messages
        token = page.next_page_token
        if not token:
            break
    assert [m.name for m in newest] == [m.name for m in reversed(listed.messages)]

    await expect_error(
        me.call("ListMessages", pb.ListMessagesRequest(parent=s.name, order_by="text")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="order_by",
    )
    # A token is bound to its order.
    first = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name, page_size=2))
    await expect_error(
        me.call(
            "ListMessages",
            pb.ListMessagesRequest(
                parent=s.name, page_size=2, page_token=first.next_page_token, order_by="create_time desc"
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token",
    )


async def test_every_refusal_is_named(sessions_channel: grpc.aio.Channel, keys: Keys) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    await expect_error(send(me, s, "x" * 8001), grpc.StatusCode.INVALID_ARGUMENT, field="message.text")
    await expect_error(send(me, s, "   "), grpc.StatusCode.INVALID_ARGUMENT, field="message.text")
    await expect_error(
        me.call("SendMessage", pb.SendMessageRequest(parent=s.name)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="message",
    )
    await expect_error(
        me.call("SendMessage", pb.SendMessageRequest(parent="sessions/nope", message=pb.Message(text="hi"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="parent",
    )
    assert (await send(me, s, "y" * 8000)).reply.text

    # Another account: NOT_FOUND, to send and to read.
    stranger = Caller(sessions_channel, keys)
    await expect_error(send(stranger, s, "hello"), grpc.StatusCode.NOT_FOUND)
    await expect_error(
        stranger.call("ListMessages", pb.ListMessagesRequest(parent=s.name)), grpc.StatusCode.NOT_FOUND
    )
    # A colleague who does not work the session reads it but cannot talk to it.
    colleague = me.other_user()
    await expect_error(
        send(colleague, s, "hello"), grpc.StatusCode.PERMISSION_DENIED, reason="NOT_SESSION_ASSIGNEE"
    )
    listed = await colleague.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert len(listed.messages) == 2
    await expect_error(send(me.as_role(Role.VIEWER), s, "hello"), grpc.StatusCode.PERMISSION_DENIED)
    # A team admin may.
    assert (await send(colleague.as_role(Role.TEAM_ADMIN), s, "hello")).reply.text
    # Only while active.
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="fixed"))
    await expect_error(
        send(me, s, "still there?"), grpc.StatusCode.FAILED_PRECONDITION, reason="SESSION_NOT_ACTIVE"
    )


async def test_a_conversation_is_bounded(
    sessions_channel: grpc.aio.Channel, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copilot, "MAX_CONVERSATION_MESSAGES", 4)
    me = Caller(sessions_channel, keys)
    s = await me.session()
    await send(me, s, "one")
    await send(me, s, "two")
    error = await expect_error(
        send(me, s, "three"), grpc.StatusCode.FAILED_PRECONDITION, reason="CONVERSATION_FULL"
    )
    assert "at most 4 messages" in error.message
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert len(listed.messages) == 4


async def test_secrets_never_reach_the_model_or_the_reply(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    await me.fact(s, "The service account password is Hunter2-Secret!9 and it expired")
    answer = await send(me, s, "remember: the api key is sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    reply = answer.reply
    assert "Hunter2-Secret!9" not in reply.text
    assert "sk-ant-api03-AAAA" not in reply.text
    assert all("sk-ant-api03-AAAA" not in p.title for p in reply.proposals)
    assert "expired" in reply.text  # the fact is quoted, its secret is not
