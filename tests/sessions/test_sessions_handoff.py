"""Handoff over a real channel and database: assignees, the team queue, claim
and assign, who may change a session, escalated sessions handed over, and
the people recorded beside their ids."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.auth import Role
from tests.sessions.helpers import Caller, mask
from tests.sessions.test_sessions_tenancy import CALLS
from tests.support import Keys
from tests.support import expect_error as _fails

# What only someone working the session may do (the rest of CALLS reads).
WRITES = {
    "update session",
    "add lane item",
    "update lane item",
    "create fact",
    "update fact",
    "delete fact",
    "undelete fact",
    "suggest fix",
    "accept fix",
    "reject fix",
    "resolve",
    "escalate",
    "abandon",
    "post note",
    "post package",
}
READS = {
    "get session",
    "get fact",
    "list facts",
    "active fix",
    "list fixes",
    "preview note",
    "preview package",
}


@pytest.fixture
def me(sessions_channel: grpc.aio.Channel, keys: Keys) -> Caller:
    return Caller(sessions_channel, keys, name="Morgan Engineer")


def ticket() -> str:
    return f"CW #{uuid.uuid4().int % 10**7}"


async def escalate_into(
    l1: Caller, ticket_ref: str, *, walk: uuid.UUID | None = None, request_id: str | None = None
) -> pb.CreateSessionResponse:
    """What the walks service sends when an L1 technician escalates a walk."""
    return await l1.call(
        "CreateSession",
        pb.CreateSessionRequest(
            session=pb.Session(
                ticket_ref=ticket_ref, ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="L1 escalation"
            ),
            request_id=request_id or str(uuid.uuid4()),
            force_new=True,
            facts=[pb.Fact(text="L1 note: whole floor", source=pb.FACT_SOURCE_USER)],
            escalated_walk=f"walks/{walk or uuid.uuid4()}",
        ),
    )


def open_ticket(caller: Caller, ticket_ref: str, **fields: Any) -> Any:
    """The UI opening a ticket: CreateSession with what it knows of it."""
    given = pb.Session(
        ticket_ref=ticket_ref, ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="Printer offline"
    )
    return caller.call("CreateSession", pb.CreateSessionRequest(session=given, **fields))


def claim(caller: Caller, session: pb.Session, etag: str = "") -> Any:
    return caller.call("ClaimSession", pb.ClaimSessionRequest(name=session.name, etag=etag))


def assign(caller: Caller, session: pb.Session, assignee: str, **fields: Any) -> Any:
    return caller.call(
        "AssignSession", pb.AssignSessionRequest(name=session.name, assignee=assignee, **fields)
    )


async def listed(caller: Caller, **filters: Any) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        page = await caller.call(
            "ListSessions", pb.ListSessionsRequest(page_size=2, page_token=token, **filters)
        )
        names += [s.name for s in page.sessions]
        token = page.next_page_token
        if not token:
            return names


async def test_a_session_someone_starts_is_theirs_with_their_name(me: Caller) -> None:
    session = await me.session()
    assert session.assignee == session.creator == str(me.user)
    assert session.assignee_display_name == session.creator_display_name == "Morgan Engineer"
    assert not session.escalated_walk and not session.closer
    nameless = await me.other_user().session()
    assert nameless.creator_display_name == nameless.assignee_display_name == ""
    resolved = await me.call("ResolveSession", pb.ResolveSessionRequest(name=session.name, summary="Done"))
    assert (resolved.closer, resolved.closer_display_name) == (str(me.user), "Morgan Engineer")
    admin = me.other_user("Ada Admin").as_role(Role.TEAM_ADMIN)
    abandoned = await admin.call("AbandonSession", pb.AbandonSessionRequest(name=nameless.name))
    assert (abandoned.closer, abandoned.closer_display_name) == (str(admin.user), "Ada Admin")
    assert abandoned.abandon_reason == ""  # only the sweep records one


async def test_an_escalation_waits_unassigned_and_is_checked_as_far_as_the_service_can(me: Caller) -> None:
    l1 = me.other_user("Lou L1")
    ticket_ref, walk = ticket(), uuid.uuid4()
    own = await l1.session(ticket_ref)  # the technician's own session on the ticket is never resumed for it
    request_id = str(uuid.uuid4())
    response = await escalate_into(l1, ticket_ref, walk=walk, request_id=request_id)
    session = response.session
    assert not response.resumed and session.name != own.name
    assert session.escalated_walk == f"walks/{walk}"
    assert session.assignee == "" and session.assignee_display_name == ""
    assert (session.creator, session.creator_display_name) == (str(l1.user), "Lou L1")
    # The walks service's retry replays; another session for the same walk is refused.
    again = await escalate_into(l1, ticket_ref, walk=walk, request_id=request_id)
    assert again.session.name == session.name
    await _fails(
        escalate_into(l1, ticket_ref, walk=walk),
        grpc.StatusCode.ALREADY_EXISTS,
        reason="WALK_ALREADY_ESCALATED",
    )
    for bad in ("walks/x", f"flows/{walk}", f"walks/{str(walk).upper()}", f"walks/{walk}/steps/1"):
        await _fails(
            l1.call(
                "CreateSession",
                pb.CreateSessionRequest(
                    session=pb.Session(ticket_ref="T", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="t"),
                    request_id=str(uuid.uuid4()),
                    escalated_walk=bad,
                ),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="escalated_walk",
        )
    await _fails(
        l1.call(
            "CreateSession",
            pb.CreateSessionRequest(
                session=pb.Session(ticket_ref="T", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="t"),
                escalated_walk=f"walks/{uuid.uuid4()}",
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="request_id",
    )


async def test_the_queue_and_the_assignee_filters_page_and_sign_their_filters(me: Caller) -> None:
    l1 = me.other_user()
    queued = [(await escalate_into(l1, ticket())).session for _ in range(3)]
    ended = (await escalate_into(l1, ticket())).session
    await l1.call("AbandonSession", pb.AbandonSessionRequest(name=ended.name))
    mine = [await me.session() for _ in range(3)]
    theirs = await me.other_user().session()

    queue = await listed(me, unassigned=True, status=pb.SESSION_STATUS_ACTIVE)
    assert queue == [s.name for s in reversed(queued)]  # newest first
    assert await listed(me, unassigned=True) == [ended.name, *queue]
    assert await listed(me, assignee="me") == [s.name for s in reversed(mine)]
    assert await listed(me, assignee=str(me.user), status=pb.SESSION_STATUS_ACTIVE) == [
        s.name for s in reversed(mine)
    ]
    assert await listed(me, assignee=theirs.assignee) == [theirs.name]
    # A page token belongs to its filter, and `me` to whoever asked.
    first = await me.call("ListSessions", pb.ListSessionsRequest(page_size=1, assignee="me"))
    for other in (
        me.call("ListSessions", pb.ListSessionsRequest(page_token=first.next_page_token, unassigned=True)),
        me.call("ListSessions", pb.ListSessionsRequest(page_token=first.next_page_token)),
        l1.call("ListSessions", pb.ListSessionsRequest(page_token=first.next_page_token, assignee="me")),
    ):
        await _fails(other, grpc.StatusCode.INVALID_ARGUMENT, reason="INVALID_PAGE_TOKEN")
    for filters, field in (
        ({"assignee": "me", "unassigned": True}, "unassigned"),
        ({"assignee": "someone"}, "assignee"),
        ({"assignee": str(me.user).upper()}, "assignee"),
    ):
        await _fails(
            me.call("ListSessions", pb.ListSessionsRequest(**filters)),
            grpc.StatusCode.INVALID_ARGUMENT,
            field=field,
        )
    # Viewers see the queue too.
    assert await listed(me.as_role(Role.VIEWER), unassigned=True, status=pb.SESSION_STATUS_ACTIVE) == queue


async def test_claiming(me: Caller) -> None:
    l1, other = me.other_user("Lou L1"), me.other_user("Olly Other")
    session = (await escalate_into(l1, ticket())).session
    await _fails(claim(me, session, etag="9"), grpc.StatusCode.ABORTED, reason="ETAG_MISMATCH")
    await _fails(claim(me, session, etag="v1"), grpc.StatusCode.INVALID_ARGUMENT, field="etag")
    await _fails(claim(me.as_role(Role.VIEWER), session), grpc.StatusCode.PERMISSION_DENIED)
    claimed = await claim(me, session, etag=session.etag)
    assert (claimed.assignee, claimed.assignee_display_name) == (str(me.user), "Morgan Engineer")
    assert claimed.state_version == session.state_version + 1  # the notes name who works it
    assert claimed.creator == str(l1.user)  # the technician stays recorded
    again = await claim(me, claimed)
    assert again == claimed  # already theirs: nothing changes
    error = await _fails(
        claim(other, claimed), grpc.StatusCode.FAILED_PRECONDITION, reason="ALREADY_ASSIGNED"
    )
    assert "Morgan Engineer" in error.message
    # A team admin takes it over.
    admin = other.as_role(Role.TEAM_ADMIN)
    taken = await claim(admin, claimed, etag=claimed.etag)
    assert (taken.assignee, taken.assignee_display_name) == (str(other.user), "Olly Other")
    resolved = await admin.call("ResolveSession", pb.ResolveSessionRequest(name=taken.name, summary="Fixed"))
    await _fails(claim(admin, resolved), grpc.StatusCode.FAILED_PRECONDITION, reason="SESSION_NOT_ACTIVE")
    await _fails(claim(me, pb.Session(name=f"sessions/{uuid.uuid4()}")), grpc.StatusCode.NOT_FOUND)


async def test_assigning(me: Caller) -> None:
    admin = me.other_user("Ada Admin").as_role(Role.TEAM_ADMIN)
    session = (await escalate_into(me.other_user(), ticket())).session
    await _fails(assign(me, session, str(me.user)), grpc.StatusCode.PERMISSION_DENIED)
    for bad in ("someone", str(me.user).upper(), "{" + str(me.user) + "}", str(me.user).replace("-", "")):
        await _fails(assign(admin, session, bad), grpc.StatusCode.INVALID_ARGUMENT, field="assignee")
    await _fails(
        assign(admin, session, "", assignee_display_name="Nobody"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="assignee_display_name",
    )
    target = uuid.uuid4()
    assigned = await assign(
        admin, session, str(target), assignee_display_name=" Tam  Tar\x07get ", etag=session.etag
    )
    assert (assigned.assignee, assigned.assignee_display_name) == (str(target), "Tam Target")
    assert assigned.state_version == session.state_version + 1
    await _fails(
        assign(admin, assigned, str(me.user), etag=session.etag),
        grpc.StatusCode.ABORTED,
        reason="ETAG_MISMATCH",
    )
    same = await assign(admin, assigned, str(target))
    assert same == assigned  # the same person under the recorded name: nothing changes
    to_self = await assign(admin, assigned, str(admin.user))
    assert to_self.assignee_display_name == "Ada Admin"
    back = await assign(admin, to_self, "", etag=to_self.etag)
    assert back.assignee == "" and back.assignee_display_name == ""
    assert session.name in await listed(me, unassigned=True, status=pb.SESSION_STATUS_ACTIVE)
    ended = await admin.call("AbandonSession", pb.AbandonSessionRequest(name=back.name))
    await _fails(
        assign(admin, ended, str(target)), grpc.StatusCode.FAILED_PRECONDITION, reason="SESSION_NOT_ACTIVE"
    )


async def _world(owner: Caller) -> dict[str, str]:
    session = await owner.session()
    item = await owner.lane_item(session, title="Check DNS")
    fact = await owner.fact(session, "DNS points at the old DC")
    fix = await owner.call("SuggestFix", pb.SuggestFixRequest(parent=session.name))
    return {"session": session.name, "item": item.name, "fact": fact.name, "fix": fix.name}


@pytest.mark.parametrize("label", sorted(WRITES))
async def test_only_whoever_works_a_session_changes_it(me: Caller, label: str) -> None:
    names = await _world(me)
    before = await me.call("GetSession", pb.GetSessionRequest(name=names["session"]))
    error = await _fails(
        CALLS[label](me.other_user(), names), grpc.StatusCode.PERMISSION_DENIED, reason="NOT_SESSION_ASSIGNEE"
    )
    assert "assigned to Morgan Engineer" in error.message
    assert await me.call("GetSession", pb.GetSessionRequest(name=names["session"])) == before
    # A team admin may, whoever has it (a delete before the undelete).
    admin = me.other_user().as_role(Role.TEAM_ADMIN)
    if label == "undelete fact":
        await CALLS["delete fact"](admin, names)
    await CALLS[label](admin, names)


async def test_everyone_in_the_account_reads_a_session(me: Caller) -> None:
    names = await _world(me)
    for label in sorted(READS):
        await CALLS[label](me.other_user().as_role(Role.VIEWER), names)


async def test_the_technician_works_an_escalation_until_someone_claims_it(me: Caller) -> None:
    l1 = me.other_user("Lou L1")
    session = (await escalate_into(l1, ticket())).session
    await l1.fact(session, "Printer also offline for the 2nd floor")
    error = await _fails(
        me.fact(session, "mine"), grpc.StatusCode.PERMISSION_DENIED, reason="NOT_SESSION_ASSIGNEE"
    )
    assert "waits in the team queue; claim it" in error.message
    claimed = await claim(me, session)
    await me.fact(claimed, "Spooler restarted on the print server")
    await _fails(
        l1.fact(claimed, "one more"), grpc.StatusCode.PERMISSION_DENIED, reason="NOT_SESSION_ASSIGNEE"
    )
    await _fails(
        l1.call(
            "UpdateSession",
            pb.UpdateSessionRequest(
                session=pb.Session(name=claimed.name, title="t"), update_mask=mask("title")
            ),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_opening_an_escalated_ticket_hands_its_session_over(me: Caller) -> None:
    l1, other = me.other_user("Lou L1"), me.other_user()
    ticket_ref = ticket()
    escalated = (await escalate_into(l1, ticket_ref)).session
    opened = await open_ticket(me, ticket_ref)
    assert opened.handed_over and opened.resumed and opened.session.name == escalated.name
    assert opened.session.assignee == ""  # offered, not taken: claim it to work it
    claimed = await claim(me, opened.session)
    # The engineer's own now: opening the ticket again resumes it.
    again = await open_ticket(me, ticket_ref)
    assert again.resumed and not again.handed_over and again.session.name == claimed.name
    # Someone else opening the ticket is shown it too (it names who has it).
    theirs = await open_ticket(other, ticket_ref)
    assert theirs.handed_over and theirs.session.assignee == str(me.user)
    # force_new: a blank session of their own; from then on that one is theirs.
    blank = await other.session(ticket_ref, force_new=True)
    assert blank.name != escalated.name and blank.assignee == str(other.user)
    resumed = await open_ticket(other, ticket_ref)
    assert resumed.resumed and not resumed.handed_over and resumed.session.name == blank.name
    # Once the escalated session ends, nothing is handed over.
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=claimed.name, summary="Spooler"))
    fresh = await open_ticket(me, ticket_ref)
    assert not fresh.resumed and not fresh.handed_over
