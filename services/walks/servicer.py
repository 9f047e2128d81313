"""gRPC surface of the walks service: decode, apply the rules, encode."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from flowpilot.walks.v1 import walks_pb2_grpc
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core import ids, pagination, validation
from services.core.ai import AI
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    not_found,
)
from services.core.rpc import created
from services.walks import convert, storage, trees
from services.walks.convert import FLOW, PROPOSAL, WALK
from services.walks.escalation import SessionsEscalator
from services.walks.sweep import StaleWalkSweep

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

MAX_PATH = 200
MAX_NOTES = 100
TREE_CACHE_SIZE = 256  # converted tree snapshots kept per process (≤ 500 nodes each)


class WalksServicer(walks_pb2_grpc.WalksServiceServicer):
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
        self._db = db
        self._ai = ai
        self._settings = settings
        self._escalator = escalator
        self._sweep = sweep
        self._clock = clock
        # (account, walk) → its tree snapshot as a message. A snapshot never
        # changes once the walk starts, so each is decoded and converted once
        # per process instead of on every step.
        self._trees: dict[tuple[uuid.UUID, uuid.UUID], pb.Tree] = {}

    # --- flows -----------------------------------------------------------------------

    async def _flow(
        self, conn: AsyncConnection, name: str, *, lock: bool = False, field: str = "name"
    ) -> Any:
        row = await storage.get_flow(conn, convert.parse_id(name, FLOW, field), lock=lock)
        if row is None:
            raise not_found("flow", name)
        return row

    async def CreateFlow(self, request: pb.CreateFlowRequest, context: Context) -> pb.Flow:
        principal = current_principal()
        tree = trees.from_proto(request.flow.tree, prefix="flow.tree")
        async with self._db.transaction() as conn:
            row = await storage.insert_flow(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=validation.nonblank(request.flow.display_name, "flow.display_name"),
                description=request.flow.description,
                tree=tree,
                created_by=principal.user_id,
            )
        flow = convert.flow(row, tree)
        created(flow.name)
        return flow

    async def GetFlow(self, request: pb.GetFlowRequest, context: Context) -> pb.Flow:
        async with self._db.transaction() as conn:
            return convert.flow(await self._flow(conn, request.name))

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Context) -> pb.ListFlowsResponse:
        limit = pagination.page_size(request.page_size)
        status = convert.db(convert.FLOW_STATUS, request.status, "status") if request.status else None
        query = pagination.fingerprint(current_principal().account_id, {"flows": status})
        after = pagination.keyset_after(request.page_token, query_fingerprint=query, first=str)
        async with self._db.transaction() as conn:
            rows = list(await storage.list_flows(conn, status=status, after=after, limit=limit + 1))
        return pb.ListFlowsResponse(
            flows=[convert.flow(r) for r in rows[:limit]],
            next_page_token=pagination.next_page_token(
                rows, limit, query_fingerprint=query, key=lambda r: r.name
            ),
        )

    async def UpdateFlow(self, request: pb.UpdateFlowRequest, context: Context) -> pb.Flow:
        given = request.flow
        allowed = {"display_name", "description", "tree"}
        paths = validation.update_paths(
            given, request.update_mask.paths, allowed=allowed, default=allowed, prefix="flow"
        )
        values: dict[str, Any] = {}
        if "display_name" in paths:
            values["name"] = validation.nonblank(given.display_name, "flow.display_name")
        if "description" in paths:
            values["description"] = given.description
        if "tree" in paths:
            values["tree"] = trees.from_proto(given.tree, prefix="flow.tree")
        expected = ids.parse_etag(given.etag, field="flow.etag")
        async with self._db.transaction() as conn:
            row = await self._flow(conn, given.name, lock=True, field="flow.name")
            if expected is not None and expected != row.revision:
                raise Aborted("flow changed since it was read; read it again", reason="ETAG_MISMATCH")
            if row.status == "archived":
                raise FailedPrecondition("archived flows cannot change", reason="FLOW_ARCHIVED")
            if "tree" in values and values["tree"] != row.tree:
                values["version"] = row.version + 1
            row = await storage.update_flow(conn, row.id, **values)
        return convert.flow(row)

    async def PublishFlow(self, request: pb.PublishFlowRequest, context: Context) -> pb.Flow:
        async with self._db.transaction() as conn:
            row = await self._flow(conn, request.name, lock=True)
            if row.status == "archived":
                raise FailedPrecondition("archived flows cannot be published", reason="FLOW_ARCHIVED")
            row = await storage.update_flow(conn, row.id, status="published")
        return convert.flow(row)

    async def ArchiveFlow(self, request: pb.ArchiveFlowRequest, context: Context) -> pb.Flow:
        async with self._db.transaction() as conn:
            row = await self._flow(conn, request.name, lock=True)
            row = await storage.update_flow(conn, row.id, status="archived")
        return convert.flow(row)

    # --- proposals ---------------------------------------------------------------------

    async def _proposal(
        self, conn: AsyncConnection, name: str, *, lock: bool = False, field: str = "name"
    ) -> Any:
        row = await storage.get_proposal(conn, convert.parse_id(name, PROPOSAL, field), lock=lock)
        if row is None:
            raise not_found("flow proposal", name)
        return row

    async def CreateFlowProposal(
        self, request: pb.CreateFlowProposalRequest, context: Context
    ) -> pb.FlowProposal:
        principal = current_principal()
        given = request.flow_proposal
        tree = trees.from_proto(given.tree, prefix="flow_proposal.tree")
        async with self._db.transaction() as conn:
            row = await storage.insert_proposal(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=validation.nonblank(given.display_name, "flow_proposal.display_name"),
                description=given.description,
                tree=tree,
                source=convert.db(convert.PROPOSAL_SOURCE, given.source, "flow_proposal.source"),
                rationale=given.rationale,
                created_by=principal.user_id,
            )
        proposal = convert.proposal(row, tree)
        created(proposal.name)
        return proposal

    async def GetFlowProposal(self, request: pb.GetFlowProposalRequest, context: Context) -> pb.FlowProposal:
        async with self._db.transaction() as conn:
            return convert.proposal(await self._proposal(conn, request.name))

    async def ListFlowProposals(
        self, request: pb.ListFlowProposalsRequest, context: Context
    ) -> pb.ListFlowProposalsResponse:
        limit = pagination.page_size(request.page_size)
        status = convert.db(convert.PROPOSAL_STATUS, request.status, "status") if request.status else None
        query = pagination.fingerprint(current_principal().account_id, {"proposals": status})
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            rows = list(await storage.list_proposals(conn, status=status, after=after, limit=limit + 1))
        return pb.ListFlowProposalsResponse(
            flow_proposals=[convert.proposal(r) for r in rows[:limit]],
            next_page_token=pagination.next_page_token(
                rows, limit, query_fingerprint=query, key=lambda r: r.create_time.isoformat()
            ),
        )

    async def _review(self, conn: AsyncConnection, name: str) -> Any:
        row = await self._proposal(conn, name, lock=True)
        if row.status != "pending":
            raise FailedPrecondition(
                f"proposal is {row.status}; only pending ones can be reviewed", reason="PROPOSAL_NOT_PENDING"
            )
        return row

    async def ApproveFlowProposal(
        self, request: pb.ApproveFlowProposalRequest, context: Context
    ) -> pb.ApproveFlowProposalResponse:
        principal = current_principal()
        async with self._db.transaction() as conn:
            row = await self._review(conn, request.name)
            tree = row.tree
            flow = await storage.insert_flow(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=row.name,
                description=row.description,
                tree=tree,
                status="published",
                created_by=principal.user_id,
            )
            row = await storage.update_proposal(
                conn,
                row.id,
                status="approved",
                reviewer_id=principal.user_id,
                review_time=func.now(),
                flow_id=flow.id,
            )
        return pb.ApproveFlowProposalResponse(
            flow_proposal=convert.proposal(row), flow=convert.flow(flow, tree)
        )

    async def RejectFlowProposal(
        self, request: pb.RejectFlowProposalRequest, context: Context
    ) -> pb.FlowProposal:
        principal = current_principal()
        async with self._db.transaction() as conn:
            row = await self._review(conn, request.name)
            row = await storage.update_proposal(
                conn, row.id, status="rejected", reviewer_id=principal.user_id, review_time=func.now()
            )
        return convert.proposal(row)

    # --- walks ---------------------------------------------------------------------------

    async def _ai_tree(self, problem: str) -> dict[str, Any]:
        """A valid tree from the AI: one retry on an unusable answer, then an error."""
        prefs = await self._settings.preferences()
        last = ""
        for _ in range(2):
            try:
                built = await self._ai.build_decision_tree(problem, prefs)
            except FailedPrecondition as exc:
                last = exc.message
                continue
            tree = trees.from_ai(built)
            found = trees.problems(tree)
            if not found:
                return tree
            last = "; ".join(f"{path}: {text}" for path, text in found[:3])
        raise FailedPrecondition(
            f"the AI could not build a valid decision tree ({last})", reason="AI_TREE_INVALID"
        )

    async def StartWalk(self, request: pb.StartWalkRequest, context: Context) -> pb.StartWalkResponse:
        principal = current_principal()
        ticket = validation.nonblank(request.ticket_id, "ticket_id")
        ticket_kind = convert.db(convert.TICKET_KIND, request.ticket_kind, "ticket_kind")
        kind = convert.db(convert.WALK_KIND, request.kind, "kind")
        target: dict[str, Any] = {"flow_id": None, "flow_proposal_id": None}
        for field, needed in (("flow", kind == "flow"), ("flow_proposal", kind == "proposal")):
            given = getattr(request, field)
            if needed and not given:
                raise InvalidArgument(FieldViolation(field, f"is required for a {kind} walk"))
            if given and not needed:
                raise InvalidArgument(FieldViolation(field, f"must be empty for a {kind} walk"))
        if kind == "ai_build":
            validation.nonblank(request.problem, "problem")
        elif request.problem:
            raise InvalidArgument(FieldViolation("problem", "is only for AI-built walks"))
        async with self._db.transaction() as conn:
            await storage.lock_ticket(conn, user_id=principal.user_id, ticket_id=ticket)
            if not request.force_new:
                active = await storage.active_walk_for(conn, user_id=principal.user_id, ticket_id=ticket)
                if active is not None:
                    return pb.StartWalkResponse(walk=await self._message(conn, active), resumed=True)
            tree, version = None, None
            if kind == "flow":
                flow = await self._flow(conn, request.flow, field="flow")
                if flow.status != "published":
                    raise FailedPrecondition(
                        f"flow is {flow.status}; only published flows can be walked",
                        reason="FLOW_NOT_PUBLISHED",
                    )
                tree, version, target["flow_id"] = flow.tree, flow.version, flow.id
            elif kind == "proposal":
                proposal = await self._proposal(conn, request.flow_proposal, field="flow_proposal")
                tree, target["flow_proposal_id"] = proposal.tree, proposal.id
        if kind == "ai_build":
            tree = await self._ai_tree(request.problem)  # outside any transaction
        now = self._clock()
        async with self._db.transaction() as conn:
            if kind == "ai_build" and not request.force_new:
                # Re-check after the model call: another start may have won meanwhile.
                await storage.lock_ticket(conn, user_id=principal.user_id, ticket_id=ticket)
                active = await storage.active_walk_for(conn, user_id=principal.user_id, ticket_id=ticket)
                if active is not None:
                    return pb.StartWalkResponse(walk=await self._message(conn, active), resumed=True)
            row = await storage.insert_walk(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                created_by_user_id=principal.user_id,
                acting_as=request.acting_as or None,
                ticket_id=ticket,
                ticket_kind=ticket_kind,
                session_kind=kind,
                tree=tree,
                flow_version=version,
                current_node_id=tree["root"] if tree else None,
                started_at=now,
                last_step_at=now,
                **target,
            )
            walk = await self._message(conn, row)
        created(walk.name)
        return pb.StartWalkResponse(walk=walk)

    async def _messages(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[pb.Walk]:
        """Walk messages with their tree snapshots, built in the RPC's transaction."""
        account = current_principal().account_id
        found = {r.id: self._trees.get((account, r.id)) for r in rows if r.has_tree}
        missing = [walk_id for walk_id, tree in found.items() if tree is None]
        if missing:
            for walk_id, tree in (await storage.walk_trees(conn, missing)).items():
                found[walk_id] = message = trees.to_proto(tree)
                if message is None:
                    continue
                if len(self._trees) >= TREE_CACHE_SIZE:
                    self._trees.pop(next(iter(self._trees)))  # the oldest entry
                self._trees[(account, walk_id)] = message
        return [convert.walk(r, found.get(r.id)) for r in rows]

    async def _message(self, conn: AsyncConnection, row: Any) -> pb.Walk:
        return (await self._messages(conn, [row]))[0]

    async def _walk(self, conn: AsyncConnection, name: str, *, lock: bool = False) -> Any:
        row = await storage.get_walk(conn, convert.parse_id(name, WALK, "name"), lock=lock)
        if row is None:
            raise not_found("walk", name)
        return row

    async def _active(self, conn: AsyncConnection, name: str, *, stepping: bool = True) -> Any:
        """The walk, locked; FAILED_PRECONDITION unless it is active (and, for
        ``stepping``, unless its escalation has started: its path is frozen)."""
        row = await self._walk(conn, name, lock=True)
        if row.status != "active":
            raise FailedPrecondition(
                f"walk is {row.status}; only active walks change",
                reason="WALK_NOT_ACTIVE",
                metadata={"status": row.status},
            )
        if stepping and row.escalation_request_id is not None:
            raise FailedPrecondition(
                "the walk's escalation has started; retry EscalateWalk (or abandon the walk)",
                reason="ESCALATION_IN_PROGRESS",
            )
        return row

    async def GetWalk(self, request: pb.GetWalkRequest, context: Context) -> pb.Walk:
        async with self._db.transaction() as conn:
            return await self._message(conn, await self._walk(conn, request.name))

    async def ListWalks(self, request: pb.ListWalksRequest, context: Context) -> pb.ListWalksResponse:
        limit = pagination.page_size(request.page_size)
        status = convert.db(convert.WALK_STATUS, request.status, "status") if request.status else None
        kind = convert.db(convert.WALK_KIND, request.kind, "kind") if request.kind else None
        query = pagination.fingerprint(
            current_principal().account_id, {"s": status, "t": request.ticket_id, "k": kind}
        )
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            rows = list(
                await storage.list_walks(
                    conn,
                    status=status,
                    ticket_id=request.ticket_id or None,
                    kind=kind,
                    after=after,
                    limit=limit + 1,
                )
            )
            walks = await self._messages(conn, rows[:limit])
        return pb.ListWalksResponse(
            walks=walks,
            next_page_token=pagination.next_page_token(
                rows, limit, query_fingerprint=query, key=lambda r: r.started_at.isoformat()
            ),
        )

    async def AdvanceWalk(self, request: pb.AdvanceWalkRequest, context: Context) -> pb.Walk:
        async with self._db.transaction() as conn:
            row = await self._active(conn, request.name)
            if not row.has_tree:
                raise FailedPrecondition("an ad-hoc walk has no tree to advance in", reason="NO_TREE")
            node = await storage.walk_node(conn, row.id, row.current_node_id)
            if node is None:
                raise Internal(f"walk {row.id}: node {row.current_node_id!r} is not in its tree")
            options = node.get("options", [])
            if not options:
                raise FailedPrecondition(
                    f"node {node['id']!r} is a {node['kind']}: resolve or escalate", reason="TERMINAL_NODE"
                )
            option = next((o for o in options if o["label"] == request.choice), None)
            if option is None:
                labels = ", ".join(repr(o["label"]) for o in options)
                raise InvalidArgument(
                    FieldViolation(
                        "choice", f"node {node['id']!r} has no option {request.choice!r}; options: {labels}"
                    )
                )
            if len(row.walked_path) >= MAX_PATH:
                raise FailedPrecondition(f"a walk takes at most {MAX_PATH} steps", reason="PATH_FULL")
            now = self._clock()
            step = {
                "node": node["id"],
                "choice": option["label"],
                "next": option["next"],
                "time": now.isoformat(),
            }
            row = await storage.update_walk(
                conn,
                row.id,
                walked_path=[*row.walked_path, step],
                current_node_id=option["next"],
                last_step_at=now,
            )
            return await self._message(conn, row)

    async def StepBackWalk(self, request: pb.StepBackWalkRequest, context: Context) -> pb.Walk:
        async with self._db.transaction() as conn:
            row = await self._active(conn, request.name)
            if not row.walked_path:
                raise FailedPrecondition("the walk is at its first node", reason="AT_ROOT")
            last = row.walked_path[-1]
            row = await storage.update_walk(
                conn,
                row.id,
                walked_path=row.walked_path[:-1],
                current_node_id=last["node"],
                last_step_at=self._clock(),
            )
            return await self._message(conn, row)

    async def AddWalkNote(self, request: pb.AddWalkNoteRequest, context: Context) -> pb.Walk:
        text = validation.nonblank(request.text, "text")
        async with self._db.transaction() as conn:
            row = await self._active(conn, request.name)
            if len(row.walk_notes) >= MAX_NOTES:
                raise FailedPrecondition(f"a walk holds at most {MAX_NOTES} notes", reason="NOTES_FULL")
            now = self._clock()
            note = {
                "node": row.current_node_id or "",
                "text": text,
                "time": now.isoformat(),
                "author": str(current_principal().user_id),
            }
            row = await storage.update_walk(
                conn, row.id, walk_notes=[*row.walk_notes, note], last_step_at=now
            )
            return await self._message(conn, row)

    async def ResolveWalk(self, request: pb.ResolveWalkRequest, context: Context) -> pb.Walk:
        notes = validation.nonblank(request.resolution_notes, "resolution_notes")
        async with self._db.transaction() as conn:
            row = await self._active(conn, request.name)
            now = self._clock()
            row = await storage.update_walk(
                conn,
                row.id,
                status="resolved",
                resolution_notes=notes,
                helpful=request.helpful if request.HasField("helpful") else None,
                resolved_at=now,
                last_step_at=now,
            )
            return await self._message(conn, row)

    async def EscalateWalk(self, request: pb.EscalateWalkRequest, context: Context) -> pb.Walk:
        reason = validation.nonblank(request.reason, "reason")
        category = convert.db(convert.CATEGORY, request.category, "category")
        # Claim in one short transaction: the escalation's request id, reason
        # and category are recorded once (the walk's path is frozen from then
        # on), so every retry sends the same request, whatever reason it
        # gives. The call runs outside any transaction; a second short one
        # records the session it created.
        async with self._db.transaction() as conn:
            row = await self._walk(conn, request.name, lock=True)
            if row.status == "escalated" and row.escalation_session_id is not None:
                return await self._message(conn, row)  # a retry: the session exists and is linked
            row = await self._active(conn, request.name, stepping=False)
            if row.escalation_request_id is None:
                row = await storage.update_walk(
                    conn,
                    row.id,
                    escalation_request_id=uuid.uuid4(),
                    escalation_reason=reason,
                    escalation_reason_category=category,
                    last_step_at=self._clock(),  # not stale while it escalates
                )
            tree = (await storage.walk_trees(conn, [row.id])).get(row.id)
        session_id = await self._escalator.escalate(
            row,
            tree,
            reason=row.escalation_reason,
            category=row.escalation_reason_category,
            request_id=row.escalation_request_id,
        )
        async with self._db.transaction() as conn:
            current = await self._walk(conn, request.name, lock=True)
            if current.status == "active":
                now = self._clock()
                current = await storage.update_walk(
                    conn,
                    current.id,
                    status="escalated",
                    escalation_session_id=session_id,
                    resolved_at=now,
                    last_step_at=now,
                )
            elif current.escalation_session_id != session_id:
                # Abandoned (or swept) while the session was being created: the
                # session exists all the same, so the walk names it (committed
                # before the caller is told).
                current = await storage.update_walk(conn, current.id, escalation_session_id=session_id)
            message = await self._message(conn, current)
        if message.status != pb.WALK_STATUS_ESCALATED:
            raise FailedPrecondition(
                f"the walk was abandoned during its escalation; its session is sessions/{session_id}",
                reason="WALK_NOT_ACTIVE",
            )
        return message

    async def AbandonWalk(self, request: pb.AbandonWalkRequest, context: Context) -> pb.Walk:
        async with self._db.transaction() as conn:
            row = await self._active(conn, request.name, stepping=False)
            now = self._clock()
            row = await storage.update_walk(conn, row.id, status="abandoned", resolved_at=now)
            return await self._message(conn, row)

    async def SweepStaleWalks(
        self, request: pb.SweepStaleWalksRequest, context: Context
    ) -> pb.SweepStaleWalksResponse:
        abandoned, hours = await self._sweep.sweep_account(current_principal())
        return pb.SweepStaleWalksResponse(abandoned=abandoned, stale_after_hours=hours)
