"""Walks and the team queue, on the real walks and sessions services: an
escalated walk's session waits unassigned, is handed over to the engineer
who opens the ticket, claimed and worked."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from flowpilot.walks.v1 import walks_pb2_grpc

from services.core.auth import Role
from tests.support import Keys, expect_error
from tests.walks.helpers import Tech


class Person:
    """Someone of one account, with a display name in their token, on both services."""

    def __init__(self, keys: Keys, account: uuid.UUID, name: str, role: Role = Role.ENGINEER) -> None:
        self.keys, self.account, self.user, self.name, self.role = keys, account, uuid.uuid4(), name, role

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return self.keys.metadata(account_id=self.account, user_id=self.user, role=self.role, name=self.name)

    def walks(self, channel: grpc.aio.Channel, method: str, request: Any) -> Any:
        return getattr(walks_pb2_grpc.WalksServiceStub(channel), method)(request, metadata=self.md)

    def sessions(self, channel: grpc.aio.Channel, method: str, request: Any) -> Any:
        return getattr(sessions_pb2_grpc.SessionsServiceStub(channel), method)(request, metadata=self.md)


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


async def test_an_escalated_walk_lands_in_the_queue_and_is_handed_over(
    tech: Tech, walks_channel: grpc.aio.Channel, sessions_channel: grpc.aio.Channel
) -> None:
    l1 = Person(tech.keys, tech.account, "Lou L1")
    engineer = Person(tech.keys, tech.account, "Eve Engineer")
    ticket = f"CW #{uuid.uuid4().int % 10**7}"
    flow = await tech.flow()
    walk = (
        await l1.walks(
            walks_channel,
            "StartWalk",
            pb.StartWalkRequest(
                ticket_ref=ticket,
                ticket_kind=tickets_pb2.TICKET_KIND_PSA,
                kind=pb.WALK_KIND_FLOW,
                flow=flow.name,
            ),
        )
    ).walk
    for choice in ("Yes", "No"):
        walk = await l1.walks(
            walks_channel, "AdvanceWalk", pb.AdvanceWalkRequest(name=walk.name, choice=choice)
        )
    await l1.walks(
        walks_channel, "AddWalkNote", pb.AddWalkNoteRequest(name=walk.name, text="Whole floor affected")
    )
    escalated = await l1.walks(
        walks_channel,
        "EscalateWalk",
        pb.EscalateWalkRequest(
            name=walk.name, reason="Printer offline for all", category=pb.ESCALATION_CATEGORY_NEEDS_ACCESS
        ),
    )

    # The session waits in the team queue, the technician recorded, the walk named.
    session = await l1.sessions(
        sessions_channel, "GetSession", sessions_pb2.GetSessionRequest(name=escalated.session)
    )
    assert session.escalated_walk == walk.name
    assert (session.assignee, session.assignee_display_name) == ("", "")
    assert (session.creator, session.creator_display_name) == (str(l1.user), "Lou L1")
    queue = await engineer.sessions(
        sessions_channel,
        "ListSessions",
        sessions_pb2.ListSessionsRequest(unassigned=True, status=sessions_pb2.SESSION_STATUS_ACTIVE),
    )
    assert [s.name for s in queue.sessions] == [session.name]

    # The engineer opening the ticket gets it, with the walk's path and notes.
    opened = await engineer.sessions(
        sessions_channel,
        "CreateSession",
        sessions_pb2.CreateSessionRequest(
            session=sessions_pb2.Session(
                ticket_ref=ticket, ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="Printer"
            )
        ),
    )
    assert opened.handed_over and opened.resumed and opened.session.name == session.name
    facts = await engineer.sessions(
        sessions_channel, "ListFacts", sessions_pb2.ListFactsRequest(parent=session.name)
    )
    assert "L1 note: Whole floor affected" in [f.text for f in facts.facts]

    # Claimed, it is the engineer's to work; the technician reads it only.
    claimed = await engineer.sessions(
        sessions_channel,
        "ClaimSession",
        sessions_pb2.ClaimSessionRequest(name=session.name, etag=session.etag),
    )
    assert (claimed.assignee, claimed.assignee_display_name) == (str(engineer.user), "Eve Engineer")
    fact = sessions_pb2.Fact(text="Print server spooler crashed", source=sessions_pb2.FACT_SOURCE_USER)
    await engineer.sessions(
        sessions_channel, "CreateFact", sessions_pb2.CreateFactRequest(parent=session.name, fact=fact)
    )
    await expect_error(
        l1.sessions(
            sessions_channel, "CreateFact", sessions_pb2.CreateFactRequest(parent=session.name, fact=fact)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        reason="NOT_SESSION_ASSIGNEE",
    )
    resolved = await engineer.sessions(
        sessions_channel,
        "ResolveSession",
        sessions_pb2.ResolveSessionRequest(name=session.name, summary="Restarted the spooler"),
    )
    assert (resolved.closer, resolved.closer_display_name) == (str(engineer.user), "Eve Engineer")
    queue = await engineer.sessions(
        sessions_channel,
        "ListSessions",
        sessions_pb2.ListSessionsRequest(unassigned=True, status=sessions_pb2.SESSION_STATUS_ACTIVE),
    )
    assert list(queue.sessions) == []
