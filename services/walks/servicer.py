"""gRPC surface of the walks service: decode the request, call the domain
(``flows``, ``walking``), encode the reply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from flowpilot.walks.v1 import walks_pb2 as pb
from flowpilot.walks.v1 import walks_pb2_grpc

from services.core import ids, names, pagination, search, validation
from services.core.ai import AI
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.rpc import created
from services.walks import catalogue, convert, trees
from services.walks.catalogue import Categories
from services.walks.catalogue_servicer import CatalogueMethods, Context, account
from services.walks.convert import FLOW, WALK
from services.walks.escalation import SessionsEscalator
from services.walks.flows import FlowChanges, Flows, Proposals
from services.walks.snapshots import Snapshots
from services.walks.stats import FlowStatistics
from services.walks.storage import FlowFilter, FlowRow, WalkRow
from services.walks.sweep import StaleWalkSweep
from services.walks.walking import Walks

# A flow listing's position: the sort key of its last flow, as it is in the token.
SORT_KEYS: dict[str, Callable[[str], Any]] = {
    "name": str,
    "relevance": float,
    "usage": int,
    "recency": datetime.fromisoformat,
}
SORTED_BY: dict[str, Callable[[FlowRow], object]] = {
    "name": lambda row: row.name,
    "relevance": lambda row: row.rank,
    "usage": lambda row: row.usage_count,
    "recency": lambda row: row.create_time.isoformat(),
}


class WalksServicer(CatalogueMethods, walks_pb2_grpc.WalksServiceServicer):
    """The walks service's RPCs (categories, proposals and statistics in
    :class:`CatalogueMethods`)."""

    def __init__(
        self,
        db: Database,
        ai: AI,
        settings: SettingsReader,
        escalator: SessionsEscalator,
        sweep: StaleWalkSweep,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._flows = Flows(db)
        self._proposals = Proposals(db)
        self._categories = Categories(db)
        self._walks = Walks(db, ai, settings, escalator, clock=clock)
        self._snapshots = Snapshots(db)
        self._stats = FlowStatistics(db)
        self._sweep = sweep

    # --- flows -----------------------------------------------------------------------

    async def CreateFlow(self, request: pb.CreateFlowRequest, context: Context) -> pb.Flow:
        tree = trees.from_proto(request.flow.tree, prefix="flow.tree")
        row = await self._flows.create(
            current_principal(),
            name=validation.nonblank(request.flow.display_name, "flow.display_name"),
            description=request.flow.description,
            tree=tree,
            category=convert.category_ref(request.flow.category, "flow.category"),
            tags=catalogue.check_tags(request.flow.tags, field="flow.tags"),
        )
        flow = convert.flow(row, tree)
        created(flow.name)
        return flow

    async def GetFlow(self, request: pb.GetFlowRequest, context: Context) -> pb.Flow:
        return convert.flow(
            await self._flows.get(account(), names.parse_id(request.name, FLOW, field="name"), request.name)
        )

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Context) -> pb.ListFlowsResponse:
        searched = search.parse(request.query)
        where = FlowFilter(
            status=convert.FLOW_STATUS.optional(request.status),
            search=searched,
            category_id=convert.category_ref(request.category, "category").id,
            tag=catalogue.check_tag_filter(request.tag),
        )
        order = catalogue.list_order(
            convert.FLOW_ORDER.optional(request.order_by), searching=searched is not None
        )
        paging = pagination.paging(
            request,
            current_principal().account_id,
            {
                "s": where.status,
                "q": request.query.strip() or None,
                "c": str(where.category_id) if where.category_id else None,
                "t": where.tag,
                "o": order,
            },
            first=SORT_KEYS[order],
        )
        rows = await self._flows.page(
            account(), where=where, order=order, after=paging.after, limit=paging.fetch
        )
        shown, token = paging.page(rows, key=SORTED_BY[order])
        return pb.ListFlowsResponse(flows=[convert.flow(r) for r in shown], next_page_token=token)

    async def UpdateFlow(self, request: pb.UpdateFlowRequest, context: Context) -> pb.Flow:
        given = request.flow
        default = {"display_name", "description", "tree"}
        paths = validation.update_paths(
            given,
            request.update_mask.paths,
            allowed=default | {"category", "tags"},
            default=default,
            prefix="flow",
        )
        changes = FlowChanges(
            name=validation.nonblank(given.display_name, "flow.display_name")
            if "display_name" in paths
            else None,
            description=given.description if "description" in paths else None,
            tree=trees.from_proto(given.tree, prefix="flow.tree") if "tree" in paths else None,
            category=convert.category_ref(given.category, "flow.category") if "category" in paths else None,
            tags=catalogue.check_tags(given.tags, field="flow.tags") if "tags" in paths else None,
        )
        expected = ids.parse_etag(given.etag, field="flow.etag")
        flow_id = names.parse_id(given.name, FLOW, field="flow.name")
        return convert.flow(await self._flows.update(account(), flow_id, given.name, changes, expected))

    async def PublishFlow(self, request: pb.PublishFlowRequest, context: Context) -> pb.Flow:
        flow_id = names.parse_id(request.name, FLOW, field="name")
        return convert.flow(await self._flows.publish(account(), flow_id, request.name))

    async def ArchiveFlow(self, request: pb.ArchiveFlowRequest, context: Context) -> pb.Flow:
        flow_id = names.parse_id(request.name, FLOW, field="name")
        return convert.flow(await self._flows.archive(account(), flow_id, request.name))

    # --- walks ---------------------------------------------------------------------------

    async def _encode(self, rows: Sequence[WalkRow]) -> list[pb.Walk]:
        return [
            convert.walk(r, t)
            for r, t in zip(rows, await self._snapshots.trees(account(), rows), strict=True)
        ]

    async def _walk(self, row: WalkRow) -> pb.Walk:
        return (await self._encode([row]))[0]

    async def StartWalk(self, request: pb.StartWalkRequest, context: Context) -> pb.StartWalkResponse:
        principal = current_principal()
        row, resumed, tree = await self._walks.start(principal, convert.start(request))
        if tree is not None:  # the new walk's snapshot: no read back
            self._snapshots.remember(principal.account_id, row.id, tree)
        walk = await self._walk(row)
        if resumed:
            return pb.StartWalkResponse(walk=walk, resumed=True)
        created(walk.name)
        return pb.StartWalkResponse(walk=walk)

    async def GetWalk(self, request: pb.GetWalkRequest, context: Context) -> pb.Walk:
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.get(account(), walk_id, request.name))

    async def ListWalks(self, request: pb.ListWalksRequest, context: Context) -> pb.ListWalksResponse:
        status = convert.WALK_STATUS.optional(request.status)
        kind = convert.WALK_KIND.optional(request.kind)
        paging = pagination.paging(
            request,
            current_principal().account_id,
            {"s": status, "t": request.ticket_ref, "k": kind},
            first=datetime.fromisoformat,
        )
        rows = await self._walks.page(
            account(),
            status=status,
            ticket_ref=request.ticket_ref or None,
            kind=kind,
            after=paging.after,
            limit=paging.fetch,
        )
        shown, token = paging.page(rows, key=lambda r: r.start_time.isoformat())
        return pb.ListWalksResponse(walks=await self._encode(shown), next_page_token=token)

    async def AdvanceWalk(self, request: pb.AdvanceWalkRequest, context: Context) -> pb.Walk:
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.advance(account(), walk_id, request.name, request.choice))

    async def StepBackWalk(self, request: pb.StepBackWalkRequest, context: Context) -> pb.Walk:
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.step_back(account(), walk_id, request.name))

    async def AddWalkNote(self, request: pb.AddWalkNoteRequest, context: Context) -> pb.Walk:
        text = validation.nonblank(request.text, "text")
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.add_note(current_principal(), walk_id, request.name, text))

    async def ResolveWalk(self, request: pb.ResolveWalkRequest, context: Context) -> pb.Walk:
        notes = validation.nonblank(request.summary, "summary")
        helpful = request.helpful if request.HasField("helpful") else None
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.resolve(account(), walk_id, request.name, notes, helpful))

    async def EscalateWalk(self, request: pb.EscalateWalkRequest, context: Context) -> pb.Walk:
        reason = validation.nonblank(request.reason, "reason")
        category = convert.CATEGORY.db(request.category)
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(
            await self._walks.escalate(account(), walk_id, request.name, reason, category)
        )

    async def AbandonWalk(self, request: pb.AbandonWalkRequest, context: Context) -> pb.Walk:
        walk_id = names.parse_id(request.name, WALK, field="name")
        return await self._walk(await self._walks.abandon(account(), walk_id, request.name))

    async def SweepStaleWalks(
        self, request: pb.SweepStaleWalksRequest, context: Context
    ) -> pb.SweepStaleWalksResponse:
        abandoned, hours = await self._sweep.sweep_account(current_principal())
        return pb.SweepStaleWalksResponse(abandoned=abandoned, stale_after_hours=hours)
