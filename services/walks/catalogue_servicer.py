"""gRPC surface of the flow catalogue around the flows themselves: categories,
proposals (made, reviewed, saved from an AI-built walk) and flow statistics;
mixed into the walks servicer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from google.protobuf import empty_pb2

from services.core import names, pagination, validation
from services.core.auth import current_principal
from services.core.errors import FieldViolation, InvalidArgument
from services.core.rpc import created
from services.walks import convert, trees
from services.walks.catalogue import Categories
from services.walks.convert import CATEGORY_NAME, PROPOSAL, WALK
from services.walks.flows import Proposals
from services.walks.stats import FlowStatistics

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def account() -> uuid.UUID:
    """The caller's account: every domain call names it."""
    return current_principal().account_id


class CatalogueMethods:
    """The servicer provides the domain objects."""

    _categories: Categories
    _proposals: Proposals
    _stats: FlowStatistics

    async def GetFlowStats(self, request: pb.GetFlowStatsRequest, context: Context) -> pb.FlowStats:
        flow_id = names.parse_id(request.name, convert.FLOW_STATS, field="name")
        versions, nodes = await self._stats.get(account(), flow_id, request.name)
        return convert.flow_stats(flow_id, versions, nodes)

    # --- categories ----------------------------------------------------------------------

    async def CreateFlowCategory(
        self, request: pb.CreateFlowCategoryRequest, context: Context
    ) -> pb.FlowCategory:
        given = request.flow_category
        name = validation.nonblank(given.display_name, "flow_category.display_name")
        parent = convert.category_ref(given.parent, "flow_category.parent") if given.parent else None
        category = convert.category(await self._categories.create(account(), name=name, parent=parent))
        created(category.name)
        return category

    async def GetFlowCategory(self, request: pb.GetFlowCategoryRequest, context: Context) -> pb.FlowCategory:
        category_id = names.parse_id(request.name, CATEGORY_NAME, field="name")
        return convert.category(await self._categories.get(account(), category_id, request.name))

    async def ListFlowCategories(
        self, request: pb.ListFlowCategoriesRequest, context: Context
    ) -> pb.ListFlowCategoriesResponse:
        parent = convert.category_ref(request.parent, "parent").id
        paging = pagination.paging(
            request, current_principal().account_id, {"p": str(parent) if parent else None}, first=str
        )
        rows = await self._categories.page(
            account(), parent_id=parent, after=paging.after, limit=paging.fetch
        )
        shown, token = paging.page(rows, key=lambda r: r.name)
        return pb.ListFlowCategoriesResponse(
            flow_categories=[convert.category(r) for r in shown], next_page_token=token
        )

    async def DeleteFlowCategory(
        self, request: pb.DeleteFlowCategoryRequest, context: Context
    ) -> empty_pb2.Empty:
        category_id = names.parse_id(request.name, CATEGORY_NAME, field="name")
        await self._categories.delete(account(), category_id, request.name)
        return empty_pb2.Empty()

    # --- proposals ---------------------------------------------------------------------

    async def CreateFlowProposal(
        self, request: pb.CreateFlowProposalRequest, context: Context
    ) -> pb.FlowProposal:
        given = request.flow_proposal
        if given.source == pb.PROPOSAL_SOURCE_WALK:
            raise InvalidArgument(
                FieldViolation("flow_proposal.source", "WALK proposals are made by SaveWalkAsProposal")
            )
        tree = trees.from_proto(given.tree, prefix="flow_proposal.tree")
        row = await self._proposals.create(
            current_principal(),
            name=validation.nonblank(given.display_name, "flow_proposal.display_name"),
            description=given.description,
            tree=tree,
            source=convert.PROPOSAL_SOURCE.db(given.source),
            rationale=given.rationale,
        )
        proposal = convert.proposal(row, tree)
        created(proposal.name)
        return proposal

    async def GetFlowProposal(self, request: pb.GetFlowProposalRequest, context: Context) -> pb.FlowProposal:
        proposal_id = names.parse_id(request.name, PROPOSAL, field="name")
        return convert.proposal(await self._proposals.get(account(), proposal_id, request.name))

    async def ListFlowProposals(
        self, request: pb.ListFlowProposalsRequest, context: Context
    ) -> pb.ListFlowProposalsResponse:
        status = convert.PROPOSAL_STATUS.optional(request.status)
        paging = pagination.paging(
            request, current_principal().account_id, {"proposals": status}, first=datetime.fromisoformat
        )
        rows = await self._proposals.page(account(), status=status, after=paging.after, limit=paging.fetch)
        shown, token = paging.page(rows, key=lambda r: r.create_time.isoformat())
        return pb.ListFlowProposalsResponse(
            flow_proposals=[convert.proposal(r) for r in shown], next_page_token=token
        )

    async def ApproveFlowProposal(
        self, request: pb.ApproveFlowProposalRequest, context: Context
    ) -> pb.ApproveFlowProposalResponse:
        proposal_id = names.parse_id(request.name, PROPOSAL, field="name")
        proposal, flow = await self._proposals.approve(current_principal(), proposal_id, request.name)
        return pb.ApproveFlowProposalResponse(
            flow_proposal=convert.proposal(proposal), flow=convert.flow(flow)
        )

    async def RejectFlowProposal(
        self, request: pb.RejectFlowProposalRequest, context: Context
    ) -> pb.FlowProposal:
        proposal_id = names.parse_id(request.name, PROPOSAL, field="name")
        return convert.proposal(await self._proposals.reject(current_principal(), proposal_id, request.name))

    async def SaveWalkAsProposal(
        self, request: pb.SaveWalkAsProposalRequest, context: Context
    ) -> pb.FlowProposal:
        walk_id = names.parse_id(request.name, WALK, field="name")
        display_name = (
            validation.nonblank(request.display_name, "display_name") if request.display_name else ""
        )
        row = await self._proposals.save_walk(
            current_principal(),
            walk_id,
            request.name,
            display_name=display_name,
            description=request.description,
            rationale=request.rationale,
        )
        return convert.proposal(row)
