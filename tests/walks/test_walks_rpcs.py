"""Flows, proposals and walks over a real channel against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from google.protobuf import field_mask_pb2

from services.core.auth import Role
from tests.conftest import FakeClock
from tests.support import Keys
from tests.support import expect_error as _fails
from tests.walks.helpers import E, Q, R, Tech, printer_tree


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


BAD_TREES = {
    "missing root": (
        pb.Tree(root="zz", nodes=[pb.Node(id="a", kind=R, text="done")]),
        "flow.tree.root",
        "'zz'",
    ),
    "dangling edge": (
        pb.Tree(
            root="a", nodes=[pb.Node(id="a", kind=Q, text="?", options=[pb.Option(label="y", next="b")])]
        ),
        "flow.tree.nodes[0].options[0].next",
        "missing node 'b'",
    ),
    "cycle": (
        pb.Tree(
            root="a",
            nodes=[
                pb.Node(
                    id="a",
                    kind=Q,
                    text="?",
                    options=[pb.Option(label="y", next="b"), pb.Option(label="n", next="r")],
                ),
                pb.Node(id="b", kind=Q, text="?", options=[pb.Option(label="back", next="a")]),
                pb.Node(id="r", kind=R, text="ok"),
            ],
        ),
        "flow.tree.nodes[1].options",
        "cycle",
    ),
    "question leaf": (
        pb.Tree(root="a", nodes=[pb.Node(id="a", kind=Q, text="?")]),
        "flow.tree.nodes[0].options",
        "'a' is a leaf",
    ),
    "resolution with options": (
        pb.Tree(
            root="a", nodes=[pb.Node(id="a", kind=R, text="x", options=[pb.Option(label="y", next="a")])]
        ),
        "flow.tree.nodes[0].options",
        "must not have options",
    ),
    "unreachable": (
        pb.Tree(root="a", nodes=[pb.Node(id="a", kind=R, text="x"), pb.Node(id="b", kind=E, text="y")]),
        "flow.tree.nodes[1]",
        "'b' cannot be reached",
    ),
    "duplicate id": (
        pb.Tree(root="a", nodes=[pb.Node(id="a", kind=R, text="x"), pb.Node(id="a", kind=E, text="y")]),
        "flow.tree.nodes[1].id",
        "twice",
    ),
    "too big": (
        pb.Tree(root="n0", nodes=[pb.Node(id=f"n{i}", kind=R, text="x") for i in range(501)]),
        "flow.tree.nodes",
        "at most 500",
    ),
}


@pytest.mark.parametrize("label", list(BAD_TREES))
async def test_trees_are_validated_and_errors_name_the_node(tech: Tech, label: str) -> None:
    tree, field, words = BAD_TREES[label]
    error = await _fails(tech.flow(tree, publish=False), grpc.StatusCode.INVALID_ARGUMENT, field=field)
    assert words in error.violations[field], error
    listed = await tech.call("ListFlows", pb.ListFlowsRequest())
    assert list(listed.flows) == []


async def test_flow_lifecycle_and_versions(tech: Tech) -> None:
    flow = await tech.flow(publish=False)
    assert flow.status == pb.FLOW_STATUS_DRAFT and flow.version == 1
    renamed = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, display_name="Printing", etag=flow.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
    )
    assert renamed.version == 1 and renamed.display_name == "Printing"
    await _fails(
        tech.call(
            "UpdateFlow",
            pb.UpdateFlowRequest(
                flow=pb.Flow(name=flow.name, display_name="x", etag=flow.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
        ),
        grpc.StatusCode.ABORTED,
    )
    new_tree = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, tree=printer_tree(" (v2)")),
            update_mask=field_mask_pb2.FieldMask(paths=["tree"]),
        ),
    )
    assert new_tree.version == 2
    published = await tech.call("PublishFlow", pb.PublishFlowRequest(name=flow.name))
    assert published.status == pb.FLOW_STATUS_PUBLISHED
    archived = await tech.call("ArchiveFlow", pb.ArchiveFlowRequest(name=flow.name))
    assert archived.status == pb.FLOW_STATUS_ARCHIVED
    await _fails(
        tech.call(
            "UpdateFlow",
            pb.UpdateFlowRequest(
                flow=pb.Flow(name=flow.name, display_name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FLOW_ARCHIVED",
    )
    await _fails(
        tech.start(kind=pb.WALK_KIND_FLOW, flow=flow.name),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="FLOW_NOT_PUBLISHED",
    )
    engineer = tech.as_role(Role.ENGINEER)
    await _fails(engineer.flow(), grpc.StatusCode.PERMISSION_DENIED)


async def test_full_walk_to_a_resolution(tech: Tech, walks_clock: FakeClock) -> None:
    flow = await tech.flow()
    l1 = tech.as_role(Role.ENGINEER)
    started = await l1.start("T-100", kind=pb.WALK_KIND_FLOW, flow=flow.name)
    walk = started.walk
    assert walk.current_node == "q1" and walk.flow == flow.name and walk.flow_version == 1
    await _fails(l1.advance(walk, "Maybe"), grpc.StatusCode.INVALID_ARGUMENT, field="choice")
    first_step = walk.last_step_time.ToDatetime()
    walks_clock.advance(minutes=5)
    walk = await l1.advance(walk, "Yes")
    assert walk.current_node == "q2" and walk.last_step_time.ToDatetime() > first_step
    walk = await l1.advance(walk, "No")
    assert walk.current_node == "e1"
    await _fails(l1.advance(walk, "Yes"), grpc.StatusCode.FAILED_PRECONDITION, reason="TERMINAL_NODE")
    walk = await l1.call("StepBackWalk", pb.StepBackWalkRequest(name=walk.name))
    assert walk.current_node == "q2" and len(walk.path) == 1
    walk = await l1.advance(walk, "Yes")
    walk = await l1.call("AddWalkNote", pb.AddWalkNoteRequest(name=walk.name, text="Driver v3 was corrupt"))
    resolved = await l1.call(
        "ResolveWalk",
        pb.ResolveWalkRequest(name=walk.name, summary="Reinstalled driver", helpful=True),
    )
    assert resolved.status == pb.WALK_STATUS_RESOLVED and resolved.helpful is True
    assert [(s.node, s.choice, s.next) for s in resolved.path] == [("q1", "Yes", "q2"), ("q2", "Yes", "r2")]
    assert resolved.notes[0].node == "r2"
    for call in (
        l1.advance(resolved, "Yes"),
        l1.call("StepBackWalk", pb.StepBackWalkRequest(name=walk.name)),
        l1.call("AbandonWalk", pb.AbandonWalkRequest(name=walk.name)),
        l1.call("AddWalkNote", pb.AddWalkNoteRequest(name=walk.name, text="late")),
    ):
        await _fails(call, grpc.StatusCode.FAILED_PRECONDITION, reason="WALK_NOT_ACTIVE")


async def test_a_flow_updated_mid_walk_does_not_change_the_walk(tech: Tech) -> None:
    flow = await tech.flow()
    walk = (await tech.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    changed = pb.Tree(root="z", nodes=[pb.Node(id="z", kind=R, text="Just reboot")])
    await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, tree=changed), update_mask=field_mask_pb2.FieldMask(paths=["tree"])
        ),
    )
    walk = await tech.advance(walk, "Yes")
    assert walk.current_node == "q2" and walk.flow_version == 1
    assert {n.id for n in walk.tree.nodes} == {"q1", "r1", "q2", "r2", "e1"}
    fresh = (await tech.start(walk.ticket_ref, kind=pb.WALK_KIND_FLOW, flow=flow.name, force_new=True)).walk
    assert fresh.flow_version == 2 and fresh.current_node == "z"


async def test_every_walk_response_carries_its_own_snapshot(tech: Tech) -> None:
    # Steps read and write the walk without its tree; the snapshot in each
    # response comes from a per-process cache. Two flows whose trees differ,
    # an ad-hoc walk without one, and every RPC that returns a walk.
    printer = await tech.flow()
    other = await tech.flow(printer_tree(" (second flow)"), name="Second")
    ticket = f"T-{uuid.uuid4().hex[:8]}"
    walk = (await tech.start(ticket, kind=pb.WALK_KIND_FLOW, flow=printer.name)).walk
    second = (await tech.start(kind=pb.WALK_KIND_FLOW, flow=other.name)).walk
    adhoc = (await tech.start(kind=pb.WALK_KIND_ADHOC)).walk
    assert walk.tree == printer.tree and second.tree == other.tree and not adhoc.HasField("tree")
    responses = [
        await tech.advance(walk, "Yes"),
        await tech.call("StepBackWalk", pb.StepBackWalkRequest(name=walk.name)),
        await tech.call("AddWalkNote", pb.AddWalkNoteRequest(name=walk.name, text="checked cables")),
        await tech.call("GetWalk", pb.GetWalkRequest(name=walk.name)),
        (await tech.start(ticket, kind=pb.WALK_KIND_FLOW, flow=printer.name)).walk,  # resumed
        await tech.call("ResolveWalk", pb.ResolveWalkRequest(name=walk.name, summary="fixed")),
    ]
    assert all(r.name == walk.name and r.tree == printer.tree for r in responses)
    listed = {w.name: w for w in (await tech.call("ListWalks", pb.ListWalksRequest())).walks}
    assert listed[walk.name].tree == printer.tree and listed[second.name].tree == other.tree
    assert not listed[adhoc.name].HasField("tree")
    await _fails(tech.advance(adhoc, "Yes"), grpc.StatusCode.FAILED_PRECONDITION, reason="NO_TREE")


async def test_start_resumes_and_validates_the_target(tech: Tech) -> None:
    flow = await tech.flow()
    first = await tech.start("T-7", kind=pb.WALK_KIND_FLOW, flow=flow.name)
    again = await tech.start("T-7", kind=pb.WALK_KIND_ADHOC)
    assert again.resumed and again.walk.name == first.walk.name
    forced = await tech.start("T-7", kind=pb.WALK_KIND_ADHOC, force_new=True)
    assert not forced.resumed and forced.walk.kind == pb.WALK_KIND_ADHOC and not forced.walk.current_node
    await _fails(tech.start(kind=pb.WALK_KIND_FLOW), grpc.StatusCode.INVALID_ARGUMENT, field="flow")
    await _fails(
        tech.start(kind=pb.WALK_KIND_ADHOC, flow=flow.name), grpc.StatusCode.INVALID_ARGUMENT, field="flow"
    )
    await _fails(tech.start(kind=pb.WALK_KIND_FLOW, flow=f"flows/{uuid.uuid4()}"), grpc.StatusCode.NOT_FOUND)
    await _fails(
        tech.start(kind=pb.WALK_KIND_PROPOSAL), grpc.StatusCode.INVALID_ARGUMENT, field="flow_proposal"
    )
    await _fails(tech.start(kind=pb.WALK_KIND_AI_BUILD), grpc.StatusCode.INVALID_ARGUMENT, field="problem")
    await _fails(tech.start(kind=pb.WALK_KIND_UNSPECIFIED), grpc.StatusCode.INVALID_ARGUMENT, field="kind")
    await _fails(
        tech.start("x" * 65, kind=pb.WALK_KIND_ADHOC), grpc.StatusCode.INVALID_ARGUMENT, field="ticket_ref"
    )
    adhoc = forced.walk
    await _fails(tech.advance(adhoc, "Yes"), grpc.StatusCode.FAILED_PRECONDITION, reason="NO_TREE")
    noted = await tech.call("AddWalkNote", pb.AddWalkNoteRequest(name=adhoc.name, text="Checked event log"))
    assert noted.notes[0].text == "Checked event log"
    listed = await tech.call("ListWalks", pb.ListWalksRequest(ticket_ref="T-7", kind=pb.WALK_KIND_ADHOC))
    assert [w.name for w in listed.walks] == [adhoc.name]


async def test_proposals(tech: Tech) -> None:
    engineer = tech.as_role(Role.ENGINEER)
    proposal = await engineer.call(
        "CreateFlowProposal",
        pb.CreateFlowProposalRequest(
            flow_proposal=pb.FlowProposal(
                display_name="VPN",
                tree=printer_tree(),
                source=pb.PROPOSAL_SOURCE_AI_ANALYSIS,
                rationale="seen 12 times",
            )
        ),
    )
    assert proposal.status == pb.PROPOSAL_STATUS_PENDING
    walk = (await engineer.start(kind=pb.WALK_KIND_PROPOSAL, flow_proposal=proposal.name)).walk
    assert walk.flow_proposal == proposal.name and walk.current_node == "q1"
    await _fails(
        engineer.call("ApproveFlowProposal", pb.ApproveFlowProposalRequest(name=proposal.name)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    approved = await tech.call("ApproveFlowProposal", pb.ApproveFlowProposalRequest(name=proposal.name))
    assert (
        approved.flow.status == pb.FLOW_STATUS_PUBLISHED and approved.flow_proposal.flow == approved.flow.name
    )
    await _fails(
        tech.call("RejectFlowProposal", pb.RejectFlowProposalRequest(name=proposal.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="PROPOSAL_NOT_PENDING",
    )
    pending = await tech.call(
        "ListFlowProposals", pb.ListFlowProposalsRequest(status=pb.PROPOSAL_STATUS_PENDING)
    )
    assert list(pending.flow_proposals) == []


async def test_escalation_creates_exactly_one_session(tech: Tech, sessions_channel: grpc.aio.Channel) -> None:
    l1 = tech.as_role(Role.ENGINEER)
    flow = await tech.flow()
    walk = (await l1.start("CW #9090", kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    walk = await l1.advance(walk, "Yes")
    walk = await l1.advance(walk, "No")
    walk = await l1.call("AddWalkNote", pb.AddWalkNoteRequest(name=walk.name, text="Whole floor affected"))
    request = pb.EscalateWalkRequest(
        name=walk.name, reason="Printer offline for all", category=pb.ESCALATION_CATEGORY_NEEDS_ACCESS
    )
    escalated, again = await asyncio.gather(
        l1.call("EscalateWalk", request), l1.call("EscalateWalk", request)
    )
    retried = await l1.call("EscalateWalk", request)
    assert escalated.session == again.session == retried.session and escalated.session.startswith("sessions/")
    assert (
        escalated.status == pb.WALK_STATUS_ESCALATED
        and escalated.escalation_category == pb.ESCALATION_CATEGORY_NEEDS_ACCESS
    )
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    session = await sessions.GetSession(
        sessions_pb2.GetSessionRequest(name=escalated.session), metadata=l1.md
    )
    assert session.ticket_ref == "CW #9090"
    facts = await sessions.ListFacts(sessions_pb2.ListFactsRequest(parent=session.name), metadata=l1.md)
    texts = [f.text for f in facts.facts]
    assert texts == [
        "L1 step 1: Is the spooler running? → Yes",
        "L1 step 2: Do other users print? → No",
        "L1 note: Whole floor affected",
        "Escalated by L1 (needs access): Printer offline for all",
    ]
    listed = await sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(ticket_ref="CW #9090"), metadata=l1.md
    )
    assert len(listed.sessions) == 1


async def test_ai_build_walk_offline(tech: Tech) -> None:
    started = await tech.start(kind=pb.WALK_KIND_AI_BUILD, problem="User cannot connect to the VPN from home")
    walk = started.walk
    assert walk.kind == pb.WALK_KIND_AI_BUILD and walk.current_node == walk.tree.root
    assert "IP address" in walk.tree.nodes[0].text
    walk = await tech.advance(walk, "Yes")
    assert walk.current_node == "fix1"


async def test_walks_flows_and_proposals_name_people_by_their_display_name(tech: Tech) -> None:
    lead = tech.named("Sam Lead")
    flow = await lead.flow()
    assert flow.creator == str(tech.user) and flow.creator_display_name == "Sam Lead"
    technician = tech.as_role(Role.ENGINEER).named("Lee L1")
    walk = (await technician.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    assert walk.creator_display_name == "Lee L1"
    proposal = await technician.call(
        "CreateFlowProposal",
        pb.CreateFlowProposalRequest(
            flow_proposal=pb.FlowProposal(
                display_name="VPN", tree=printer_tree(), source=pb.PROPOSAL_SOURCE_USER
            )
        ),
    )
    assert proposal.creator_display_name == "Lee L1"
    rejected = await lead.call("RejectFlowProposal", pb.RejectFlowProposalRequest(name=proposal.name))
    assert rejected.reviewer == str(tech.user) and rejected.reviewer_display_name == "Sam Lead"
    unnamed = (await tech.as_role(Role.ENGINEER).start(kind=pb.WALK_KIND_ADHOC)).walk
    assert unnamed.creator_display_name == ""  # no name claim: the id alone
