"""The copilot conversation over a real channel: replies grounded in the
session, stored and listed, proposals pending (nothing written silently),
every error named."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.ai import DEFAULT_PROMPT_VERSION
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
        reply.model == "offline" and reply.tier == "fast" and reply.prompt_version == DEFAULT_PROMPT_VERSION
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


async def test_a_conversation_without_room_for_a_whole_reply_is_refused_before_the_model(
    sessions_channel: grpc.aio.Channel, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    monkeypatch.setattr(copilot, "MAX_CONVERSATION_CHARS", copilot.MAX_REPLY_CHARS + 10)
    await expect_error(
        send(me, s, "hello there"), grpc.StatusCode.FAILED_PRECONDITION, reason="CONVERSATION_FULL"
    )
    used = await me.as_role(Role.TEAM_ADMIN).call("GetAiUsage", pb.GetAiUsageRequest(name="aiUsage/current"))
    assert used.model_calls == 0  # the model was never called for a reply the conversation could not take


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


async def test_proposals_are_applied_or_dismissed_once_by_who_works_the_session(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session(problem="Printer jobs stuck in the queue")
    reply = (await send(me, s, "remember: the spooler crashed at 09:12; what fix?")).reply
    check, fact, fix = reply.proposals
    version = (await me.get(s)).state_version

    # A colleague who does not work it, a viewer, another account: refused, nothing written.
    await expect_error(
        me.other_user().call("ApplyProposal", pb.ApplyProposalRequest(name=check.name)),
        grpc.StatusCode.PERMISSION_DENIED,
        reason="NOT_SESSION_ASSIGNEE",
    )
    await expect_error(
        me.as_role(Role.VIEWER).call("ApplyProposal", pb.ApplyProposalRequest(name=check.name)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        Caller(sessions_channel, keys).call("DismissProposal", pb.DismissProposalRequest(name=check.name)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        me.call("ApplyProposal", pb.ApplyProposalRequest(name=f"{s.name}/messages/x/proposals/y")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="name",
    )
    assert (await me.get(s)).state_version == version

    applied = await me.call("ApplyProposal", pb.ApplyProposalRequest(name=check.name))
    assert applied.state == pb.PROPOSAL_STATE_APPLIED and applied.decider == str(me.user)
    assert applied.result.startswith(f"{s.name}/laneItems/")
    item = await me.call("GetLaneItem", pb.GetLaneItemRequest(name=applied.result))
    assert item.title == check.title and item.kind == pb.LANE_ITEM_KIND_CHECK
    assert item.status == pb.LANE_ITEM_STATUS_PENDING
    assert (await me.get(s)).state_version == version + 1

    applied = await me.call("ApplyProposal", pb.ApplyProposalRequest(name=fact.name))
    written = await me.call("GetFact", pb.GetFactRequest(name=applied.result))
    assert written.text == "the spooler crashed at 09:12; what fix?" and written.source == pb.FACT_SOURCE_AI
    assert (await me.get(s)).state_version == version + 2

    dismissed = await me.call("DismissProposal", pb.DismissProposalRequest(name=fix.name))
    assert dismissed.state == pb.PROPOSAL_STATE_DISMISSED and not dismissed.result
    assert (await me.get(s)).state_version == version + 2
    await expect_error(
        me.call("GetActiveFix", pb.GetActiveFixRequest(parent=s.name)), grpc.StatusCode.NOT_FOUND
    )
    # Once only.
    for method, request in (
        ("ApplyProposal", pb.ApplyProposalRequest(name=fix.name)),
        ("DismissProposal", pb.DismissProposalRequest(name=check.name)),
    ):
        await expect_error(
            me.call(method, request), grpc.StatusCode.FAILED_PRECONDITION, reason="PROPOSAL_NOT_PENDING"
        )
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert [p.state for p in listed.messages[1].proposals] == [
        pb.PROPOSAL_STATE_APPLIED,
        pb.PROPOSAL_STATE_APPLIED,
        pb.PROPOSAL_STATE_DISMISSED,
    ]

    # A fix proposal applied supersedes the active fix, as SuggestFix does.
    await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    fix2 = (await send(me, s, "another fix please")).reply.proposals[-1]
    applied = await me.call("ApplyProposal", pb.ApplyProposalRequest(name=fix2.name))
    active = await me.call("GetActiveFix", pb.GetActiveFixRequest(parent=s.name))
    assert (
        active.name == applied.result
        and active.title == fix2.title
        and list(active.steps) == list(fix2.steps)
    )
    fixes = await me.call("ListFixes", pb.ListFixesRequest(parent=s.name))
    assert len(fixes.fixes) == 2 and not fixes.fixes[1].active

    # Not once the session is closed.
    pending = (await send(me, s, "what now?")).reply.proposals[0]
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="spooler restarted"))
    await expect_error(
        me.call("ApplyProposal", pb.ApplyProposalRequest(name=pending.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="SESSION_NOT_ACTIVE",
    )
