"""Sessions, task lane, facts, fixes and lifecycle over a real channel and database."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.auth import Role
from tests.sessions.helpers import Caller, mask
from tests.support import Keys
from tests.support import expect_error as _fails


@pytest.fixture
def me(sessions_channel: grpc.aio.Channel, keys: Keys) -> Caller:
    return Caller(sessions_channel, keys)


async def test_create_get_and_resume(me: Caller) -> None:
    first = await me.session("CW #1001")
    assert first.name.startswith("sessions/")
    assert first.status == pb.SESSION_STATUS_ACTIVE
    assert first.state_version == 0 and first.etag == "0"
    assert first.creator == str(me.user)
    again = await me.call(
        "CreateSession",
        pb.CreateSessionRequest(
            session=pb.Session(ticket_ref="CW #1001", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="x")
        ),
    )
    assert again.resumed and again.session.name == first.name
    forced = await me.call(
        "CreateSession",
        pb.CreateSessionRequest(
            session=pb.Session(ticket_ref="CW #1001", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="x"),
            force_new=True,
        ),
    )
    assert not forced.resumed and forced.session.name != first.name
    # Another engineer on the same ticket gets a session of their own.
    theirs = await me.other_user().session("CW #1001")
    assert theirs.name not in (first.name, forced.session.name)
    got = await me.get(first)
    assert got == first


async def test_request_id_makes_create_idempotent(me: Caller) -> None:
    request_id = str(uuid.uuid4())
    a = await me.session("CW #2002", request_id=request_id, force_new=True)
    b = await me.session("CW #2002", request_id=request_id, force_new=True)
    assert a.name == b.name
    await _fails(
        me.session("CW #2002", request_id="not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT, field="request_id"
    )


async def test_list_filters_and_pages(me: Caller) -> None:
    ticket = f"CW #{uuid.uuid4().int % 10**6}"
    made = [await me.session(ticket, force_new=True) for _ in range(5)]
    other = await me.session()
    await me.call("AbandonSession", pb.AbandonSessionRequest(name=made[0].name))
    names: list[str] = []
    token = ""
    while True:
        page = await me.call(
            "ListSessions", pb.ListSessionsRequest(ticket_ref=ticket, page_size=2, page_token=token)
        )
        assert len(page.sessions) <= 2
        names += [s.name for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert names == [s.name for s in reversed(made)]  # newest first
    active = await me.call(
        "ListSessions", pb.ListSessionsRequest(ticket_ref=ticket, status=pb.SESSION_STATUS_ACTIVE)
    )
    assert {s.name for s in active.sessions} == {s.name for s in made[1:]}
    everything = await me.call("ListSessions", pb.ListSessionsRequest())
    assert other.name in {s.name for s in everything.sessions}
    # A token belongs to its query.
    first = await me.call("ListSessions", pb.ListSessionsRequest(ticket_ref=ticket, page_size=1))
    await _fails(
        me.call("ListSessions", pb.ListSessionsRequest(page_size=1, page_token=first.next_page_token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token",
    )
    await _fails(
        me.call("ListSessions", pb.ListSessionsRequest(page_size=-5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_size",
    )


async def test_update_with_mask_and_etag(me: Caller) -> None:
    s = await me.session()
    updated = await me.call(
        "UpdateSession",
        pb.UpdateSessionRequest(
            session=pb.Session(name=s.name, title="New title", etag=s.etag), update_mask=mask("title")
        ),
    )
    assert updated.title == "New title" and updated.problem == s.problem
    assert updated.state_version == s.state_version + 1
    await _fails(
        me.call(
            "UpdateSession",
            pb.UpdateSessionRequest(
                session=pb.Session(name=s.name, title="Stale", etag=s.etag), update_mask=mask("title")
            ),
        ),
        grpc.StatusCode.ABORTED,
        reason="ETAG_MISMATCH",
    )
    await _fails(
        me.call(
            "UpdateSession",
            pb.UpdateSessionRequest(
                session=pb.Session(name=s.name, ticket_ref="CW #9"), update_mask=mask("ticket_ref")
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="update_mask",
    )
    await _fails(
        me.call(
            "UpdateSession",
            pb.UpdateSessionRequest(session=pb.Session(name=s.name, title="  "), update_mask=mask("title")),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="session.title",
    )
    assert (await me.get(s)).title == "New title"


async def test_task_lane(me: Caller) -> None:
    s = await me.session()
    check = await me.lane_item(s, title="Check account lockout")
    script = await me.lane_item(
        s,
        kind=pb.LANE_ITEM_KIND_SCRIPT,
        title="Reset creds",
        script_body="Get-ADUser jdoe",
        script_language=pb.SCRIPT_LANGUAGE_POWERSHELL,
    )
    assert check.status == pb.LANE_ITEM_STATUS_PENDING
    done = await me.call(
        "UpdateLaneItem",
        pb.UpdateLaneItemRequest(
            lane_item=pb.LaneItem(name=script.name, status=pb.LANE_ITEM_STATUS_DONE, output="ok")
        ),
    )
    assert done.status == pb.LANE_ITEM_STATUS_DONE and done.output == "ok"
    session = await me.get(s)
    assert [i.name for i in session.lane_items] == [check.name, script.name]
    assert session.state_version == 3
    await _fails(
        me.lane_item(s, title="bad", script_body="rm -rf /"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="lane_item.script_body",
    )
    await _fails(
        me.call(
            "UpdateLaneItem",
            pb.UpdateLaneItemRequest(
                lane_item=pb.LaneItem(name=f"{s.name}/laneItems/nope", status=pb.LANE_ITEM_STATUS_DONE)
            ),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await _fails(
        me.call(
            "UpdateLaneItem",
            pb.UpdateLaneItemRequest(lane_item=pb.LaneItem(name=check.name), update_mask=mask("status")),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="lane_item.status",
    )


async def test_lane_is_bounded(me: Caller) -> None:
    s = await me.session()
    await asyncio.gather(*(me.lane_item(s, title=f"item {i}") for i in range(200)))
    await _fails(
        me.lane_item(s, title="one too many"), grpc.StatusCode.FAILED_PRECONDITION, reason="LANE_FULL"
    )
    session = await me.get(s)
    assert len(session.lane_items) == 200
    assert session.state_version == 200  # no increment lost under concurrency


async def test_facts_lifecycle(me: Caller) -> None:
    s = await me.session()
    item = await me.lane_item(s, title="Check MFA")
    a = await me.fact(s, "Password was changed Monday")
    b = await me.fact(s, "MFA prompt fails", source=pb.FACT_SOURCE_TASK_LANE, source_ref=item.name)
    assert b.source_ref == item.name
    assert (await me.call("GetFact", pb.GetFactRequest(name=a.name))).text == a.text
    changed = await me.call(
        "UpdateFact", pb.UpdateFactRequest(fact=pb.Fact(name=a.name, text="Password changed Monday 9:00"))
    )
    assert changed.text == "Password changed Monday 9:00"
    deleted = await me.call("DeleteFact", pb.DeleteFactRequest(name=a.name))
    assert deleted.HasField("delete_time")
    again = await me.call("DeleteFact", pb.DeleteFactRequest(name=a.name))
    assert again.delete_time == deleted.delete_time
    listed = await me.call("ListFacts", pb.ListFactsRequest(parent=s.name))
    assert [f.name for f in listed.facts] == [b.name]
    with_deleted = await me.call("ListFacts", pb.ListFactsRequest(parent=s.name, show_deleted=True))
    assert [f.name for f in with_deleted.facts] == [a.name, b.name]
    await _fails(
        me.call("UpdateFact", pb.UpdateFactRequest(fact=pb.Fact(name=a.name, text="x"))),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FACT_DELETED",
    )
    restored = await me.call("UndeleteFact", pb.UndeleteFactRequest(name=a.name))
    assert not restored.HasField("delete_time")
    await _fails(
        me.call("UndeleteFact", pb.UndeleteFactRequest(name=a.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FACT_NOT_DELETED",
    )
    # create, update, delete, undelete of a, create b, lane item: six writes, the repeated delete none.
    assert (await me.get(s)).state_version == 6


async def test_fact_source_ref_must_be_in_this_sessions_lane(me: Caller) -> None:
    s, other = await me.session(), await me.session()
    theirs = await me.lane_item(other, title="Other check")
    before = (await me.get(s)).state_version
    await _fails(
        me.fact(s, "x", source=pb.FACT_SOURCE_TASK_LANE, source_ref=theirs.name),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="fact.source_ref",
    )
    await _fails(
        me.fact(s, "x", source=pb.FACT_SOURCE_TASK_LANE, source_ref=f"{s.name}/laneItems/{uuid.uuid4().hex}"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="fact.source_ref",
    )
    await _fails(
        me.fact(s, "x", source=pb.FACT_SOURCE_TASK_LANE),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="fact.source_ref",
    )
    await _fails(me.fact(s, "x" * 4097), grpc.StatusCode.INVALID_ARGUMENT, field="fact.text")
    await _fails(me.fact(s, ""), grpc.StatusCode.INVALID_ARGUMENT, field="fact.text")
    await _fails(
        me.fact(s, "x", source=pb.FACT_SOURCE_UNSPECIFIED),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="fact.source",
    )
    assert (await me.get(s)).state_version == before
    assert len((await me.call("ListFacts", pb.ListFactsRequest(parent=s.name, show_deleted=True))).facts) == 0


async def test_fact_pages(me: Caller) -> None:
    s = await me.session()
    made = [await me.fact(s, f"fact {i}") for i in range(7)]
    for gone in (made[1], made[4]):
        await me.call("DeleteFact", pb.DeleteFactRequest(name=gone.name))

    async def every_page(show_deleted: bool) -> list[str]:
        seen, token = [], ""
        while True:
            page = await me.call(
                "ListFacts",
                pb.ListFactsRequest(parent=s.name, page_size=2, page_token=token, show_deleted=show_deleted),
            )
            seen += [f.name for f in page.facts]
            token = page.next_page_token
            if not token:
                return seen

    assert await every_page(show_deleted=True) == [f.name for f in made]
    assert await every_page(show_deleted=False) == [f.name for i, f in enumerate(made) if i not in (1, 4)]


async def test_fixes(me: Caller) -> None:
    s = await me.session()
    await _fails(me.call("GetActiveFix", pb.GetActiveFixRequest(parent=s.name)), grpc.StatusCode.NOT_FOUND)
    item = await me.lane_item(s, title="Check mailbox quota")
    await me.call(
        "UpdateLaneItem",
        pb.UpdateLaneItemRequest(
            lane_item=pb.LaneItem(name=item.name, status=pb.LANE_ITEM_STATUS_FAILED, output="99% full")
        ),
    )
    await me.fact(s, "Mailbox is 49.9 of 50 GB")
    first = await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    assert first.active and first.status == pb.FIX_STATUS_PROPOSED
    assert first.model == "offline" and first.steps and 0 <= first.confidence <= 1
    assert "Check mailbox quota" in first.title
    second = await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    active = await me.call("GetActiveFix", pb.GetActiveFixRequest(parent=s.name))
    assert active.name == second.name
    history = await me.call("ListFixes", pb.ListFixesRequest(parent=s.name))
    assert [f.name for f in history.fixes] == [second.name, first.name]
    assert not history.fixes[1].active and history.fixes[1].HasField("supersede_time")
    await _fails(
        me.call("AcceptFix", pb.AcceptFixRequest(name=first.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FIX_NOT_OPEN",
    )
    accepted = await me.call("AcceptFix", pb.AcceptFixRequest(name=second.name))
    assert accepted.status == pb.FIX_STATUS_ACCEPTED and accepted.HasField("decide_time")
    await _fails(
        me.call("RejectFix", pb.RejectFixRequest(name=second.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FIX_NOT_OPEN",
    )
    third = await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    rejected = await me.call("RejectFix", pb.RejectFixRequest(name=third.name))
    assert rejected.status == pb.FIX_STATUS_REJECTED


async def test_concurrent_fix_proposals_leave_one_active(me: Caller, database) -> None:
    s = await me.session()
    await me.fact(s, "Something is known")
    results = await asyncio.gather(
        *(me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name)) for _ in range(12))
    )
    assert len({r.name for r in results}) == 12
    history = await me.call("ListFixes", pb.ListFixesRequest(parent=s.name))
    assert len(history.fixes) == 12
    assert sum(1 for f in history.fixes if f.active) == 1
    assert (await me.call("GetActiveFix", pb.GetActiveFixRequest(parent=s.name))).active


async def test_concurrent_fact_writes_never_lose_a_version(me: Caller) -> None:
    s = await me.session()
    await asyncio.gather(*(me.fact(s, f"fact {i}") for i in range(25)))
    assert (await me.get(s)).state_version == 25


async def test_lifecycle_transitions(me: Caller) -> None:
    s = await me.session()
    fact = await me.fact(s, "x")
    resolved = await me.call(
        "ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Reset the MFA registration")
    )
    assert resolved.status == pb.SESSION_STATUS_RESOLVED and resolved.HasField("end_time")
    assert resolved.resolution_summary == "Reset the MFA registration"
    for call in (
        me.call("EscalateSession", pb.EscalateSessionRequest(name=s.name, reason="r")),
        me.call("AbandonSession", pb.AbandonSessionRequest(name=s.name)),
        me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="again")),
    ):
        await _fails(call, grpc.StatusCode.FAILED_PRECONDITION, reason="INVALID_TRANSITION")
    for call in (
        me.fact(s, "late"),
        me.lane_item(s, title="late"),
        me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name)),
        me.call("DeleteFact", pb.DeleteFactRequest(name=fact.name)),
        me.call(
            "UpdateSession",
            pb.UpdateSessionRequest(session=pb.Session(name=s.name, title="t"), update_mask=mask("title")),
        ),
    ):
        await _fails(call, grpc.StatusCode.FAILED_PRECONDITION, reason="SESSION_NOT_ACTIVE")
    escalated = await me.call(
        "EscalateSession", pb.EscalateSessionRequest(name=(await me.session()).name, reason="Needs AD admin")
    )
    assert escalated.status == pb.SESSION_STATUS_ESCALATED and escalated.escalation_reason == "Needs AD admin"
    await _fails(
        me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="summary",
    )


async def test_roles(me: Caller) -> None:
    s = await me.session()
    viewer = me.as_role(Role.VIEWER)
    assert (await viewer.get(s)).name == s.name
    await _fails(viewer.fact(s, "x"), grpc.StatusCode.PERMISSION_DENIED)
    await _fails(viewer.session(), grpc.StatusCode.PERMISSION_DENIED)
    await viewer.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    await _fails(
        viewer.call("PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="1")),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_malformed_names(me: Caller) -> None:
    await _fails(
        me.call("GetSession", pb.GetSessionRequest(name="sessions/not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="name",
    )
    await _fails(
        me.call("GetSession", pb.GetSessionRequest(name="facts/x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="name",
    )
    await _fails(
        me.call("GetSession", pb.GetSessionRequest(name=f"sessions/{uuid.uuid4()}")),
        grpc.StatusCode.NOT_FOUND,
    )
    await _fails(
        me.call("GetSession", pb.GetSessionRequest()), grpc.StatusCode.INVALID_ARGUMENT, field="name"
    )
