"""The walks service's rules over rows, without gRPC or a database."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.walks.v1 import walks_pb2 as pb

from services.core.errors import Aborted, FailedPrecondition, InvalidArgument
from services.walks import convert, flows, walking
from services.walks.storage import FlowRow, ProposalRow, WalkRow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def a_walk(**changes: Any) -> WalkRow:
    walk = WalkRow(
        id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        created_by_user_id=uuid.uuid4(),
        acting_as=None,
        ticket_ref="T-1",
        ticket_kind="psa",
        session_kind="flow",
        flow_id=uuid.uuid4(),
        flow_proposal_id=None,
        flow_version=1,
        escalation_session_id=None,
        escalation_request_id=None,
        current_node_id="q1",
        walked_path=[],
        walk_notes=[],
        status="active",
        resolution_summary=None,
        helpful=None,
        escalation_reason=None,
        escalation_reason_category=None,
        start_time=NOW,
        last_step_time=NOW,
        end_time=None,
        has_tree=True,
    )
    return dataclasses.replace(walk, **changes)


def a_flow(**changes: Any) -> FlowRow:
    flow = FlowRow(
        account_id=uuid.uuid4(),
        id=uuid.uuid4(),
        name="Printer",
        description="",
        version=3,
        status="draft",
        created_by=uuid.uuid4(),
        revision=7,
        create_time=NOW,
        update_time=NOW,
        tree={"root": "q1", "nodes": []},
    )
    return dataclasses.replace(flow, **changes)


QUESTION = {
    "id": "q1",
    "kind": "question",
    "text": "Spooler running?",
    "options": [{"label": "Yes", "next": "r1"}, {"label": "No", "next": "e1"}],
}


def reason(caught: pytest.ExceptionInfo[Any]) -> str:
    return str(caught.value.reason)


def test_a_step_takes_the_chosen_option() -> None:
    step = walking.next_step(a_walk(), QUESTION, "No", NOW)
    assert step == {"node": "q1", "choice": "No", "next": "e1", "time": NOW.isoformat()}


def test_an_unknown_choice_names_the_options() -> None:
    with pytest.raises(InvalidArgument) as caught:
        walking.next_step(a_walk(), QUESTION, "Maybe", NOW)
    assert caught.value.violations[0].field == "choice"
    assert "'Yes', 'No'" in caught.value.violations[0].description


def test_a_terminal_node_and_a_full_path_end_the_steps() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        walking.next_step(a_walk(), {"id": "r1", "kind": "resolution", "options": []}, "Yes", NOW)
    assert reason(caught) == "TERMINAL_NODE"
    full = a_walk(walked_path=[{"node": "q1"}] * walking.MAX_PATH)
    with pytest.raises(FailedPrecondition) as caught:
        walking.next_step(full, QUESTION, "Yes", NOW)
    assert reason(caught) == "PATH_FULL"


def test_only_active_walks_change_and_an_escalating_walk_is_frozen() -> None:
    walking.check_active(a_walk())
    with pytest.raises(FailedPrecondition) as caught:
        walking.check_active(a_walk(status="resolved"))
    assert reason(caught) == "WALK_NOT_ACTIVE"
    escalating = a_walk(escalation_request_id=uuid.uuid4())
    with pytest.raises(FailedPrecondition) as caught:
        walking.check_active(escalating)
    assert reason(caught) == "ESCALATION_IN_PROGRESS"
    walking.check_active(escalating, stepping=False)  # it may still be escalated or abandoned


def test_notes_are_bounded_and_carry_node_author_and_time() -> None:
    author = uuid.uuid4()
    assert walking.new_note(a_walk(), "cable fine", author, NOW) == {
        "node": "q1",
        "text": "cable fine",
        "time": NOW.isoformat(),
        "author": str(author),
    }
    with pytest.raises(FailedPrecondition) as caught:
        walking.new_note(a_walk(walk_notes=[{}] * walking.MAX_NOTES), "one more", author, NOW)
    assert reason(caught) == "NOTES_FULL"


def test_a_different_tree_is_a_new_version_and_the_same_tree_is_not() -> None:
    flow = a_flow()
    same = flows.changed_values(flow, flows.FlowChanges(tree=flow.tree), expected_revision=7)
    assert same == {"tree": flow.tree}
    other = {"root": "q2", "nodes": []}
    assert flows.changed_values(flow, flows.FlowChanges(name="P2", tree=other), None) == {
        "name": "P2",
        "tree": other,
        "version": 4,
    }


def test_stale_etags_and_archived_flows_refuse_updates() -> None:
    with pytest.raises(Aborted):
        flows.changed_values(a_flow(), flows.FlowChanges(name="x"), expected_revision=6)
    with pytest.raises(FailedPrecondition) as caught:
        flows.changed_values(a_flow(status="archived"), flows.FlowChanges(name="x"), None)
    assert reason(caught) == "FLOW_ARCHIVED"
    with pytest.raises(FailedPrecondition):
        flows.check_publishable(a_flow(status="archived"))
    with pytest.raises(FailedPrecondition) as caught:
        flows.check_walkable(a_flow(status="draft"))
    assert reason(caught) == "FLOW_NOT_PUBLISHED"


def test_only_pending_proposals_are_reviewed() -> None:
    proposal = ProposalRow(
        account_id=uuid.uuid4(),
        id=uuid.uuid4(),
        name="p",
        description="",
        source="user",
        rationale="",
        status="rejected",
        reviewer_id=None,
        review_time=None,
        flow_id=None,
        created_by=uuid.uuid4(),
        create_time=NOW,
    )
    with pytest.raises(FailedPrecondition) as caught:
        flows.check_reviewable(proposal)
    assert reason(caught) == "PROPOSAL_NOT_PENDING"
    flows.check_reviewable(dataclasses.replace(proposal, status="pending"))
    # Walked only while pending: a rejected one (or any state but approved,
    # by its name) is refused, an approved one points at its flow.
    flows.check_walkable_proposal(dataclasses.replace(proposal, status="pending"))
    for status, expected in (("rejected", "PROPOSAL_REJECTED"), ("withdrawn", "PROPOSAL_WITHDRAWN")):
        with pytest.raises(FailedPrecondition) as caught:
            flows.check_walkable_proposal(dataclasses.replace(proposal, status=status))
        assert reason(caught) == expected
    flow_id = uuid.uuid4()
    with pytest.raises(FailedPrecondition) as caught:
        flows.check_walkable_proposal(dataclasses.replace(proposal, status="approved", flow_id=flow_id))
    assert reason(caught) == "PROPOSAL_APPROVED" and caught.value.metadata == {"flow": f"flows/{flow_id}"}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"kind": pb.WALK_KIND_FLOW}, "flow"),
        ({"kind": pb.WALK_KIND_ADHOC, "flow": f"flows/{uuid.uuid4()}"}, "flow"),
        ({"kind": pb.WALK_KIND_PROPOSAL}, "flow_proposal"),
        ({"kind": pb.WALK_KIND_AI_BUILD, "problem": "  "}, "problem"),
        ({"kind": pb.WALK_KIND_ADHOC, "problem": "vpn"}, "problem"),
        ({"kind": pb.WALK_KIND_FLOW, "flow": "flows/not-a-uuid"}, "flow"),
    ],
)
def test_a_start_names_exactly_what_its_kind_needs(request_fields: dict[str, Any], field: str) -> None:
    request = pb.StartWalkRequest(ticket_ref="T-1", ticket_kind=tickets_pb2.TICKET_KIND_PSA, **request_fields)
    with pytest.raises(InvalidArgument) as caught:
        convert.start(request)
    assert caught.value.violations[0].field == field


def test_a_flow_walk_start_is_decoded() -> None:
    flow_id = uuid.uuid4()
    start = convert.start(
        pb.StartWalkRequest(
            ticket_ref=" T-1 ",
            ticket_kind=tickets_pb2.TICKET_KIND_PSA,
            kind=pb.WALK_KIND_FLOW,
            flow=f"flows/{flow_id}",
        )
    )
    assert start == walking.Start(
        ticket_ref="T-1",
        ticket_kind="psa",
        kind="flow",
        flow=(flow_id, f"flows/{flow_id}"),
        proposal=None,
        problem="",
        force_new=False,
        acting_as=None,
    )
