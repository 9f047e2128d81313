"""Rows ↔ protobuf messages for walks, names and enum values."""

from __future__ import annotations

import uuid
from typing import Any

from flowpilot.walks.v1 import walks_pb2 as pb

from services.core import names, validation
from services.core.enums import TICKET_KIND, EnumMap
from services.core.errors import FieldViolation, InvalidArgument
from services.core.messages import set_time
from services.walks import trees
from services.walks.catalogue import CategoryRef
from services.walks.stats import NodeCounts
from services.walks.stats_storage import VersionCounts
from services.walks.storage import CategoryRow, FlowRow, ProposalRow, Tree, WalkRow
from services.walks.walking import Start

FLOW = "flows/{flow}"
FLOW_STATS = "flows/{flow}/stats"
CATEGORY_NAME = "flowCategories/{flow_category}"
PROPOSAL = "flowProposals/{flow_proposal}"
WALK = "walks/{walk}"

FLOW_STATUS = EnumMap(
    pb.FlowStatus,
    {
        "draft": pb.FLOW_STATUS_DRAFT,
        "published": pb.FLOW_STATUS_PUBLISHED,
        "archived": pb.FLOW_STATUS_ARCHIVED,
    },
    field="status",
)
PROPOSAL_STATUS = EnumMap(
    pb.ProposalStatus,
    {
        "pending": pb.PROPOSAL_STATUS_PENDING,
        "approved": pb.PROPOSAL_STATUS_APPROVED,
        "rejected": pb.PROPOSAL_STATUS_REJECTED,
    },
    field="status",
)
PROPOSAL_SOURCE = EnumMap(
    pb.ProposalSource,
    {
        "user": pb.PROPOSAL_SOURCE_USER,
        "ai_analysis": pb.PROPOSAL_SOURCE_AI_ANALYSIS,
        "walk": pb.PROPOSAL_SOURCE_WALK,
    },
    field="flow_proposal.source",
)
FLOW_ORDER = EnumMap(
    pb.FlowOrder,
    {
        "name": pb.FLOW_ORDER_NAME,
        "relevance": pb.FLOW_ORDER_RELEVANCE,
        "recency": pb.FLOW_ORDER_RECENCY,
        "usage": pb.FLOW_ORDER_USAGE,
    },
    field="order_by",
)
WALK_KIND = EnumMap(
    pb.WalkKind,
    {
        "flow": pb.WALK_KIND_FLOW,
        "proposal": pb.WALK_KIND_PROPOSAL,
        "adhoc": pb.WALK_KIND_ADHOC,
        "ai_build": pb.WALK_KIND_AI_BUILD,
    },
    field="kind",
)
WALK_STATUS = EnumMap(
    pb.WalkStatus,
    {
        "active": pb.WALK_STATUS_ACTIVE,
        "resolved": pb.WALK_STATUS_RESOLVED,
        "escalated": pb.WALK_STATUS_ESCALATED,
        "abandoned": pb.WALK_STATUS_ABANDONED,
    },
    field="status",
)
CATEGORY = EnumMap(
    pb.EscalationCategory,
    {
        "flow_exhausted": pb.ESCALATION_CATEGORY_FLOW_EXHAUSTED,
        "needs_access": pb.ESCALATION_CATEGORY_NEEDS_ACCESS,
        "needs_expertise": pb.ESCALATION_CATEGORY_NEEDS_EXPERTISE,
        "customer_request": pb.ESCALATION_CATEGORY_CUSTOMER_REQUEST,
        "other": pb.ESCALATION_CATEGORY_OTHER,
    },
    field="category",
)


def start(request: pb.StartWalkRequest) -> Start:
    """A StartWalk request, checked: a flow walk names a flow, a proposal walk
    a proposal, an AI-built walk a problem, and no walk anything else."""
    ticket_ref = validation.nonblank(request.ticket_ref, "ticket_ref")
    ticket_kind = TICKET_KIND.db(request.ticket_kind)
    kind = WALK_KIND.db(request.kind)
    targets: dict[str, tuple[uuid.UUID, str] | None] = {}
    for field, pattern, needed in (
        ("flow", FLOW, kind == "flow"),
        ("flow_proposal", PROPOSAL, kind == "proposal"),
    ):
        given: str = getattr(request, field)
        if needed and not given:
            raise InvalidArgument(FieldViolation(field, f"is required for a {kind} walk"))
        if given and not needed:
            raise InvalidArgument(FieldViolation(field, f"must be empty for a {kind} walk"))
        targets[field] = (names.parse_id(given, pattern, field=field), given) if given else None
    if kind == "ai_build":
        validation.nonblank(request.problem, "problem")
    elif request.problem:
        raise InvalidArgument(FieldViolation("problem", "is only for AI-built walks"))
    return Start(
        ticket_ref=ticket_ref,
        ticket_kind=ticket_kind,
        kind=kind,
        flow=targets["flow"],
        proposal=targets["flow_proposal"],
        problem=request.problem,
        force_new=request.force_new,
        acting_as=request.acting_as or None,
    )


def flow(row: FlowRow, tree: Tree | None = None) -> pb.Flow:
    """A flow; ``tree`` when the row was read without it."""
    message = pb.Flow(
        name=names.format_name(FLOW, flow=row.id),
        display_name=row.name,
        description=row.description,
        tree=trees.to_proto(tree if tree is not None else row.tree),
        version=row.version,
        status=FLOW_STATUS.proto(row.status),
        creator=str(row.created_by),
        creator_display_name=row.created_by_name or "",
        etag=str(row.revision),
        category=names.format_name(CATEGORY_NAME, flow_category=row.category_id) if row.category_id else "",
        tags=row.tags,
        usage_count=row.usage_count,
    )
    set_time(message, "create_time", row.create_time)
    set_time(message, "update_time", row.update_time)
    return message


def flow_stats(flow_id: uuid.UUID, versions: list[VersionCounts], nodes: list[NodeCounts]) -> pb.FlowStats:
    message = pb.FlowStats(name=names.format_name(FLOW_STATS, flow=flow_id))
    for v in versions:
        entry = message.versions.add(
            version=v.version,
            started=v.started,
            resolved=v.resolved,
            escalated=v.escalated,
            abandoned=v.abandoned,
            active=v.active,
        )
        if v.median_to_resolve is not None:
            entry.median_time_to_resolve.FromTimedelta(v.median_to_resolve)
    message.nodes.extend(
        pb.FlowNodeStats(
            version=n.version,
            node=n.node,
            passed=n.passed,
            resolved_here=n.resolved_here,
            escalated_here=n.escalated_here,
            abandoned_here=n.abandoned_here,
        )
        for n in nodes
    )
    return message


def category_ref(given: str, field: str) -> CategoryRef:
    """A category a request names; "" names none."""
    if not given:
        return CategoryRef(id=None, name="")
    return CategoryRef(id=names.parse_id(given, CATEGORY_NAME, field=field), name=given)


def category(row: CategoryRow) -> pb.FlowCategory:
    message = pb.FlowCategory(
        name=names.format_name(CATEGORY_NAME, flow_category=row.id),
        display_name=row.name,
        parent=names.format_name(CATEGORY_NAME, flow_category=row.parent_id) if row.parent_id else "",
        depth=row.depth,
    )
    set_time(message, "create_time", row.create_time)
    return message


def proposal(row: ProposalRow, tree: Tree | None = None) -> pb.FlowProposal:
    """A proposal; ``tree`` when the row was read without it."""
    message = pb.FlowProposal(
        name=names.format_name(PROPOSAL, flow_proposal=row.id),
        display_name=row.name,
        description=row.description,
        tree=trees.to_proto(tree if tree is not None else row.tree),
        source=PROPOSAL_SOURCE.proto(row.source),
        rationale=row.rationale,
        status=PROPOSAL_STATUS.proto(row.status),
        reviewer=str(row.reviewer_id) if row.reviewer_id else "",
        reviewer_display_name=row.reviewer_name or "",
        flow=names.format_name(FLOW, flow=row.flow_id) if row.flow_id else "",
        creator=str(row.created_by),
        creator_display_name=row.created_by_name or "",
    )
    set_time(message, "review_time", row.review_time)
    set_time(message, "create_time", row.create_time)
    if row.source_walk_id is not None:
        provenance = message.provenance
        provenance.walk = names.format_name(WALK, walk=row.source_walk_id)
        provenance.ticket_ref = row.source_ticket_ref or ""
        provenance.technician = str(row.source_user_id) if row.source_user_id else ""
        provenance.technician_display_name = row.source_user_name or ""
        _path(provenance.path, row.walked_path or [])
    return message


def _path(into: Any, steps: list[dict[str, Any]]) -> None:
    for step in steps:
        item = into.add(node=step["node"], choice=step["choice"], next=step["next"])
        set_time(item, "time", step["time"])


def walk(row: WalkRow, tree: pb.Tree | None) -> pb.Walk:
    """A walk row (without its snapshot) and its tree snapshot, already converted."""
    message = pb.Walk(
        name=names.format_name(WALK, walk=row.id),
        ticket_ref=row.ticket_ref,
        ticket_kind=TICKET_KIND.proto(row.ticket_kind),
        kind=WALK_KIND.proto(row.session_kind),
        flow=names.format_name(FLOW, flow=row.flow_id) if row.flow_id else "",
        flow_version=row.flow_version or 0,
        flow_proposal=names.format_name(PROPOSAL, flow_proposal=row.flow_proposal_id)
        if row.flow_proposal_id
        else "",
        current_node=row.current_node_id or "",
        status=WALK_STATUS.proto(row.status),
        resolution_summary=row.resolution_summary or "",
        escalation_reason=row.escalation_reason or "",
        escalation_category=CATEGORY.proto(row.escalation_reason_category)
        if row.escalation_reason_category
        else pb.ESCALATION_CATEGORY_UNSPECIFIED,
        session=f"sessions/{row.escalation_session_id}" if row.escalation_session_id else "",
        creator=str(row.created_by_user_id),
        creator_display_name=row.created_by_name or "",
        acting_as=row.acting_as or "",
    )
    if tree is not None:
        message.tree.CopyFrom(tree)
    if row.helpful is not None:
        message.helpful = row.helpful
    _path(message.path, row.walked_path)
    for note in row.walk_notes:
        entry = message.notes.add(node=note.get("node", ""), text=note["text"])
        set_time(entry, "time", note["time"])
    set_time(message, "start_time", row.start_time)
    set_time(message, "last_step_time", row.last_step_time)
    set_time(message, "end_time", row.end_time)
    return message
