"""SaveWalkAsProposal: an AI-built walk's tree and path kept as a proposal."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from flowpilot.walks.v1 import walks_pb2 as pb

from services.core.auth import Role
from tests.support import Keys
from tests.support import expect_error as _fails
from tests.walks.helpers import Tech


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys, role=Role.ENGINEER, name="Lee L1")


async def _ai_walk(tech: Tech) -> pb.Walk:
    walk = (await tech.start(kind=pb.WALK_KIND_AI_BUILD, problem="Outlook will not open")).walk
    first = walk.tree.nodes[0] if walk.tree.nodes[0].id == walk.tree.root else None
    assert first is not None and first.options
    return await tech.advance(walk, first.options[0].label)


def _save(tech: Tech, walk: pb.Walk, **kwargs: str) -> Any:
    return tech.call("SaveWalkAsProposal", pb.SaveWalkAsProposalRequest(name=walk.name, **kwargs))


async def test_an_ai_built_walk_is_saved_with_its_tree_path_and_provenance(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    saved = await _save(tech, walk, rationale="worked on three tickets")
    assert saved.source == pb.PROPOSAL_SOURCE_WALK
    assert saved.status == pb.PROPOSAL_STATUS_PENDING
    assert saved.display_name == f"AI-built flow from {walk.ticket_ref}"
    assert saved.rationale == "worked on three tickets"
    assert saved.tree == walk.tree
    provenance = saved.provenance
    assert provenance.walk == walk.name and provenance.ticket_ref == walk.ticket_ref
    assert provenance.technician == str(tech.user) and provenance.technician_display_name == "Lee L1"
    assert list(provenance.path) == list(walk.path) and len(provenance.path) == 1
    read = await tech.call("GetFlowProposal", pb.GetFlowProposalRequest(name=saved.name))
    assert read == saved
    # It is walkable while pending, like any proposal, and approvable into a flow.
    started = await tech.start(kind=pb.WALK_KIND_PROPOSAL, flow_proposal=saved.name)
    assert started.walk.tree == walk.tree


async def test_saving_is_idempotent_per_walk_even_when_concurrent(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    first, second = await asyncio.gather(_save(tech, walk), _save(tech, walk, display_name="Other"))
    assert first.name == second.name
    again = await _save(tech, walk, display_name="Third")
    assert again.name == first.name and again.display_name == first.display_name
    listed = await tech.call("ListFlowProposals", pb.ListFlowProposalsRequest())
    assert [p.name for p in listed.flow_proposals].count(first.name) == 1
    assert len(listed.flow_proposals) == 1


async def test_a_given_display_name_and_description_are_kept(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    saved = await _save(tech, walk, display_name="  Outlook startup  ", description="From L1")
    assert saved.display_name == "Outlook startup" and saved.description == "From L1"


async def test_only_the_technician_or_a_team_admin_saves(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    other = Tech(tech.channel, tech.keys, account=tech.account, role=Role.ENGINEER)
    await _fails(_save(other, walk), grpc.StatusCode.PERMISSION_DENIED)
    viewer = tech.as_role(Role.VIEWER)
    await _fails(_save(viewer, walk), grpc.StatusCode.PERMISSION_DENIED)
    admin = Tech(tech.channel, tech.keys, account=tech.account, role=Role.TEAM_ADMIN)
    saved = await _save(admin, walk)
    assert saved.creator == str(admin.user) and saved.provenance.technician == str(tech.user)


async def test_walks_of_other_kinds_are_refused(tech: Tech) -> None:
    admin = tech.as_role(Role.TEAM_ADMIN)
    flow = await admin.flow()
    flow_walk = (await tech.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    adhoc = (await tech.start(kind=pb.WALK_KIND_ADHOC)).walk
    for walk in (flow_walk, adhoc):
        await _fails(_save(tech, walk), grpc.StatusCode.FAILED_PRECONDITION, reason="WALK_NOT_AI_BUILT")


async def test_another_accounts_walk_is_not_found(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    stranger = Tech(tech.channel, tech.keys, role=Role.TEAM_ADMIN)
    error = await _fails(_save(stranger, walk), grpc.StatusCode.NOT_FOUND)
    missing = pb.Walk(name="walks/00000000-0000-4000-8000-000000000000")
    error_missing = await _fails(_save(stranger, missing), grpc.StatusCode.NOT_FOUND)
    assert error.message.replace(walk.name, "X") == error_missing.message.replace(missing.name, "X")
    listed = await stranger.call("ListFlowProposals", pb.ListFlowProposalsRequest())
    assert list(listed.flow_proposals) == []


async def test_requests_are_checked(tech: Tech) -> None:
    walk = await _ai_walk(tech)
    await _fails(_save(tech, pb.Walk(name="walks/nope")), grpc.StatusCode.INVALID_ARGUMENT, field="name")
    await _fails(
        _save(tech, walk, display_name="   "), grpc.StatusCode.INVALID_ARGUMENT, field="display_name"
    )
    await _fails(
        _save(tech, walk, display_name="x" * 201), grpc.StatusCode.INVALID_ARGUMENT, field="display_name"
    )
    by_hand = pb.FlowProposal(display_name="x", tree=walk.tree, source=pb.PROPOSAL_SOURCE_WALK)
    await _fails(
        tech.call("CreateFlowProposal", pb.CreateFlowProposalRequest(flow_proposal=by_hand)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="flow_proposal.source",
    )
