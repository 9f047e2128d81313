"""Starting a walk over gRPC: ``acting_as`` is returned, and a proposal is
walked only while it waits for review."""

from __future__ import annotations

import uuid

import grpc
import pytest
from flowpilot.walks.v1 import walks_pb2 as pb

from tests.support import Keys, expect_error
from tests.walks.helpers import Tech, printer_tree


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


async def test_a_walk_says_who_the_technician_acts_as(tech: Tech) -> None:
    ticket = f"T-{uuid.uuid4().hex[:8]}"
    walk = (await tech.start(ticket, kind=pb.WALK_KIND_ADHOC, acting_as="Front desk")).walk
    assert walk.acting_as == "Front desk"
    assert (await tech.call("GetWalk", pb.GetWalkRequest(name=walk.name))).acting_as == "Front desk"
    listed = await tech.call("ListWalks", pb.ListWalksRequest(ticket_ref=ticket))
    assert [w.acting_as for w in listed.walks] == ["Front desk"]
    own = (await tech.start(kind=pb.WALK_KIND_ADHOC)).walk
    assert own.acting_as == ""


async def _proposal(tech: Tech) -> pb.FlowProposal:
    return await tech.call(
        "CreateFlowProposal",
        pb.CreateFlowProposalRequest(
            flow_proposal=pb.FlowProposal(
                display_name="Printer",
                tree=printer_tree(),
                source=pb.PROPOSAL_SOURCE_USER,
                rationale="seen twice",
            )
        ),
    )


async def test_a_proposal_is_walked_only_while_it_waits_for_review(tech: Tech) -> None:
    rejected = await _proposal(tech)
    before = (await tech.start(kind=pb.WALK_KIND_PROPOSAL, flow_proposal=rejected.name)).walk
    await tech.call("RejectFlowProposal", pb.RejectFlowProposalRequest(name=rejected.name))
    await expect_error(
        tech.start(kind=pb.WALK_KIND_PROPOSAL, flow_proposal=rejected.name),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="PROPOSAL_REJECTED",
    )
    # A walk started before the review goes on.
    assert (await tech.advance(before, "Yes")).current_node == "q2"
    approved = await _proposal(tech)
    review = await tech.call("ApproveFlowProposal", pb.ApproveFlowProposalRequest(name=approved.name))
    error = await expect_error(
        tech.start(kind=pb.WALK_KIND_PROPOSAL, flow_proposal=approved.name),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="PROPOSAL_APPROVED",
    )
    assert review.flow.name in error.message
    listed = await tech.call("ListWalks", pb.ListWalksRequest(kind=pb.WALK_KIND_PROPOSAL))
    assert [w.name for w in listed.walks] == [before.name]
