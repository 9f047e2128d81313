"""An L1 technician's walk: start (or resume) one on a ticket, step through
its tree, take notes, and end it — resolved, abandoned, or escalated into an
engineer's session."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core.ai import AI
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import FailedPrecondition, FieldViolation, Internal, InvalidArgument, found
from services.walks import flows, stats_storage, storage, trees
from services.walks.escalation import SessionsEscalator
from services.walks.storage import Connection, Tree, WalkRow

MAX_PATH = 200
MAX_NOTES = 100


@dataclass(frozen=True, slots=True)
class Start:
    """A StartWalk request, decoded: ``flow`` or ``proposal`` is (id, name as given)."""

    ticket_ref: str
    ticket_kind: str
    kind: str  # flow | proposal | adhoc | ai_build
    flow: tuple[uuid.UUID, str] | None
    proposal: tuple[uuid.UUID, str] | None
    problem: str
    force_new: bool
    acting_as: str | None


# --- rules over rows -------------------------------------------------------------------


def check_active(row: WalkRow, *, stepping: bool = True) -> None:
    """FAILED_PRECONDITION unless the walk is active (and, for ``stepping``,
    unless its escalation has started: its path is frozen)."""
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


def next_step(row: WalkRow, node: dict[str, Any], choice: str, now: datetime) -> dict[str, Any]:
    """The step taking ``choice`` at the walk's current ``node``."""
    options = node.get("options", [])
    if not options:
        raise FailedPrecondition(
            f"node {node['id']!r} is a {node['kind']}: resolve or escalate", reason="TERMINAL_NODE"
        )
    option = next((o for o in options if o["label"] == choice), None)
    if option is None:
        labels = ", ".join(repr(o["label"]) for o in options)
        raise InvalidArgument(
            FieldViolation("choice", f"node {node['id']!r} has no option {choice!r}; options: {labels}")
        )
    if len(row.walked_path) >= MAX_PATH:
        raise FailedPrecondition(f"a walk takes at most {MAX_PATH} steps", reason="PATH_FULL")
    return {"node": node["id"], "choice": option["label"], "next": option["next"], "time": now.isoformat()}


def new_note(row: WalkRow, text: str, author: uuid.UUID, now: datetime) -> dict[str, Any]:
    if len(row.walk_notes) >= MAX_NOTES:
        raise FailedPrecondition(f"a walk holds at most {MAX_NOTES} notes", reason="NOTES_FULL")
    return {"node": row.current_node_id or "", "text": text, "time": now.isoformat(), "author": str(author)}


async def walk(conn: Connection, walk_id: uuid.UUID, name: str, *, lock: bool = False) -> WalkRow:
    return found(await storage.get_walk(conn, walk_id, lock=lock), "walk", name)


async def active(conn: Connection, walk_id: uuid.UUID, name: str, *, stepping: bool = True) -> WalkRow:
    row = await walk(conn, walk_id, name, lock=True)
    check_active(row, stepping=stepping)
    return row


async def _count_pass(conn: Connection, row: WalkRow, node: str, delta: int) -> None:
    """A step from (or, -1, back to) ``node`` of a flow walk, for its flow's statistics."""
    if row.flow_id is not None and row.flow_version is not None:
        await stats_storage.count_pass(
            conn,
            account_id=row.account_id,
            flow_id=row.flow_id,
            version=row.flow_version,
            node=node,
            delta=delta,
        )


class Walks:
    def __init__(
        self,
        db: Database,
        ai: AI,
        settings: SettingsReader,
        escalator: SessionsEscalator,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings
        self._escalator = escalator
        self._clock = clock

    async def start(self, principal: Principal, start: Start) -> tuple[WalkRow, bool, Tree | None]:
        """The new walk, or (unless ``force_new``) the caller's active one on
        the ticket, whether it was resumed, and the new walk's tree snapshot."""
        target: dict[str, Any] = {"flow_id": None, "flow_proposal_id": None}
        tree: Tree | None = None
        version: int | None = None
        async with self._db.transaction(principal.account_id) as conn:
            await storage.lock_ticket(conn, user_id=principal.user_id, ticket_ref=start.ticket_ref)
            resumed = await self._resumable(conn, principal, start)
            if resumed is not None:
                return resumed, True, None
            if start.flow is not None:
                flow = await flows.flow(conn, *start.flow)
                flows.check_walkable(flow)
                tree, version, target["flow_id"] = flow.tree, flow.version, flow.id
            elif start.proposal is not None:
                proposal = await flows.proposal(conn, *start.proposal)
                flows.check_walkable_proposal(proposal)
                tree, target["flow_proposal_id"] = proposal.tree, proposal.id
        if start.kind == "ai_build":
            tree = await self._ai_tree(start.problem)  # outside any transaction
        now = self._clock()
        async with self._db.transaction(principal.account_id) as conn:
            if start.kind == "ai_build" and not start.force_new:
                # Re-check after the model call: another start may have won meanwhile.
                await storage.lock_ticket(conn, user_id=principal.user_id, ticket_ref=start.ticket_ref)
                resumed = await self._resumable(conn, principal, start)
                if resumed is not None:
                    return resumed, True, None
            if start.proposal is not None:
                # Reviewed since it was read? The lock holds off a review until this commits.
                flows.check_walkable_proposal(await flows.proposal(conn, *start.proposal, lock=True))
            if target["flow_id"] is not None:
                await storage.count_walk_started(conn, target["flow_id"])
            row = await storage.insert_walk(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                created_by_user_id=principal.user_id,
                created_by_name=principal.display_name or None,
                acting_as=start.acting_as,
                ticket_ref=start.ticket_ref,
                ticket_kind=start.ticket_kind,
                session_kind=start.kind,
                tree=tree,
                flow_version=version,
                current_node_id=tree["root"] if tree else None,
                start_time=now,
                last_step_time=now,
                **target,
            )
        return row, False, tree

    async def _resumable(self, conn: Connection, principal: Principal, start: Start) -> WalkRow | None:
        """The caller's active walk on the ticket, unless ``force_new`` (the
        caller holds the ticket's lock)."""
        if start.force_new:
            return None
        return await storage.active_walk_for(conn, user_id=principal.user_id, ticket_ref=start.ticket_ref)

    async def _ai_tree(self, problem: str) -> Tree:
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

    async def get(self, account: uuid.UUID, walk_id: uuid.UUID, name: str) -> WalkRow:
        async with self._db.transaction(account) as conn:
            return await walk(conn, walk_id, name)

    async def page(
        self,
        account: uuid.UUID,
        *,
        status: str | None,
        ticket_ref: str | None,
        kind: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[WalkRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_walks(
                conn, status=status, ticket_ref=ticket_ref, kind=kind, after=after, limit=limit
            )

    async def advance(self, account: uuid.UUID, walk_id: uuid.UUID, name: str, choice: str) -> WalkRow:
        async with self._db.transaction(account) as conn:
            row = await active(conn, walk_id, name)
            if not row.has_tree or row.current_node_id is None:
                raise FailedPrecondition("an ad-hoc walk has no tree to advance in", reason="NO_TREE")
            node = await storage.walk_node(conn, row.id, row.current_node_id)
            if node is None:
                raise Internal(f"walk {row.id}: node {row.current_node_id!r} is not in its tree")
            now = self._clock()
            step = next_step(row, node, choice, now)
            await _count_pass(conn, row, row.current_node_id, 1)
            return await storage.update_walk(
                conn,
                row.id,
                walked_path=[*row.walked_path, step],
                current_node_id=step["next"],
                last_step_time=now,
            )

    async def step_back(self, account: uuid.UUID, walk_id: uuid.UUID, name: str) -> WalkRow:
        async with self._db.transaction(account) as conn:
            row = await active(conn, walk_id, name)
            if not row.walked_path:
                raise FailedPrecondition("the walk is at its first node", reason="AT_ROOT")
            await _count_pass(conn, row, row.walked_path[-1]["node"], -1)
            return await storage.update_walk(
                conn,
                row.id,
                walked_path=row.walked_path[:-1],
                current_node_id=row.walked_path[-1]["node"],
                last_step_time=self._clock(),
            )

    async def add_note(self, principal: Principal, walk_id: uuid.UUID, name: str, text: str) -> WalkRow:
        async with self._db.transaction(principal.account_id) as conn:
            row = await active(conn, walk_id, name)
            now = self._clock()
            note = new_note(row, text, principal.user_id, now)
            return await storage.update_walk(
                conn, row.id, walk_notes=[*row.walk_notes, note], last_step_time=now
            )

    async def resolve(
        self, account: uuid.UUID, walk_id: uuid.UUID, name: str, notes: str, helpful: bool | None
    ) -> WalkRow:
        async with self._db.transaction(account) as conn:
            row = await active(conn, walk_id, name)
            now = self._clock()
            return await storage.update_walk(
                conn,
                row.id,
                status="resolved",
                resolution_summary=notes,
                helpful=helpful,
                end_time=now,
                last_step_time=now,
            )

    async def abandon(self, account: uuid.UUID, walk_id: uuid.UUID, name: str) -> WalkRow:
        async with self._db.transaction(account) as conn:
            row = await active(conn, walk_id, name, stepping=False)
            return await storage.update_walk(conn, row.id, status="abandoned", end_time=self._clock())

    async def escalate(
        self, account: uuid.UUID, walk_id: uuid.UUID, name: str, reason: str, category: str
    ) -> WalkRow:
        """The walk, escalated into a new session made of it.

        Claimed in one short transaction: the escalation's request id, reason
        and category are recorded once (the walk's path is frozen from then
        on), so every retry sends the same request, whatever reason it gives.
        The call runs outside any transaction; a second short one records the
        session it created."""
        async with self._db.transaction(account) as conn:
            row = await walk(conn, walk_id, name, lock=True)
            if row.status == "escalated" and row.escalation_session_id is not None:
                return row  # a retry: the session exists and is linked
            check_active(row, stepping=False)
            if row.escalation_request_id is None:
                row = await storage.update_walk(
                    conn,
                    row.id,
                    escalation_request_id=uuid.uuid4(),
                    escalation_reason=reason,
                    escalation_reason_category=category,
                    last_step_time=self._clock(),  # not stale while it escalates
                )
            tree = (await storage.walk_trees(conn, [row.id])).get(row.id)
        assert row.escalation_request_id is not None  # claimed above
        session_id = await self._escalator.escalate(
            row,
            tree,
            reason=row.escalation_reason or reason,
            category=row.escalation_reason_category or category,
            request_id=row.escalation_request_id,
        )
        async with self._db.transaction(account) as conn:
            current = await walk(conn, walk_id, name, lock=True)
            if current.status == "active":
                now = self._clock()
                current = await storage.update_walk(
                    conn,
                    current.id,
                    status="escalated",
                    escalation_session_id=session_id,
                    end_time=now,
                    last_step_time=now,
                )
            elif current.escalation_session_id != session_id:
                # Abandoned (or swept) while the session was being created: the
                # session exists all the same, so the walk names it (committed
                # before the caller is told).
                current = await storage.update_walk(conn, current.id, escalation_session_id=session_id)
        if current.status != "escalated":
            raise FailedPrecondition(
                f"the walk was abandoned during its escalation; its session is sessions/{session_id}",
                reason="WALK_NOT_ACTIVE",
            )
        return current
