"""Flows and flow proposals: what may change when, and the review that turns
a proposal into a published flow (one transaction)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from services.core.auth import Principal, Role
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition, PermissionDenied, found
from services.walks import catalogue, storage
from services.walks.catalogue import CategoryRef
from services.walks.storage import Connection, FlowFilter, FlowRow, ProposalRow, Tree, WalkRow


@dataclass(frozen=True, slots=True)
class FlowChanges:
    """An update's fields (None: unchanged)."""

    name: str | None = None
    description: str | None = None
    tree: Tree | None = None
    category: CategoryRef | None = None  # its id None: no category
    tags: list[str] | None = None


def changed_values(row: FlowRow, changes: FlowChanges, expected_revision: int | None) -> dict[str, Any]:
    """The columns an update writes: ABORTED on a stale etag, FAILED_PRECONDITION
    for an archived flow; a new tree (only a different one) is a new version."""
    if expected_revision is not None and expected_revision != row.revision:
        raise Aborted("flow changed since it was read; read it again", reason="ETAG_MISMATCH")
    if row.status == "archived":
        raise FailedPrecondition("archived flows cannot change", reason="FLOW_ARCHIVED")
    values: dict[str, Any] = {}
    if changes.name is not None:
        values["name"] = changes.name
    if changes.description is not None:
        values["description"] = changes.description
    if changes.tags is not None:
        values["tags"] = changes.tags
    if changes.tree is not None:
        values["tree"] = changes.tree
        if changes.tree != row.tree:
            values["version"] = row.version + 1
    return values


def check_publishable(row: FlowRow) -> None:
    if row.status == "archived":
        raise FailedPrecondition("archived flows cannot be published", reason="FLOW_ARCHIVED")


def check_walkable(row: FlowRow) -> None:
    if row.status != "published":
        raise FailedPrecondition(
            f"flow is {row.status}; only published flows can be walked", reason="FLOW_NOT_PUBLISHED"
        )


def check_walkable_proposal(row: ProposalRow) -> None:
    """A proposal is walked to try it out while it waits for review: not once
    it is rejected (reason ``PROPOSAL_REJECTED``; any other state but pending
    likewise), nor once approved (its flow is what to walk then)."""
    if row.status == "pending":
        return
    if row.status == "approved":
        flow = f"flows/{row.flow_id}"
        raise FailedPrecondition(
            f"proposal was approved; walk its flow {flow} instead",
            reason="PROPOSAL_APPROVED",
            metadata={"flow": flow},
        )
    raise FailedPrecondition(
        f"proposal is {row.status}; only proposals pending review can be walked",
        reason=f"PROPOSAL_{row.status.upper()}",
    )


def check_reviewable(row: ProposalRow) -> None:
    if row.status != "pending":
        raise FailedPrecondition(
            f"proposal is {row.status}; only pending ones can be reviewed", reason="PROPOSAL_NOT_PENDING"
        )


def check_savable(row: WalkRow, principal: Principal) -> None:
    """Only the walk's technician or a team_admin saves a walk, and only an
    AI-built walk has a tree of its own to save."""
    if row.created_by_user_id != principal.user_id and principal.role < Role.TEAM_ADMIN:
        raise PermissionDenied("only the walk's technician or a team_admin can save it as a proposal")
    if row.session_kind != "ai_build":
        raise FailedPrecondition(
            f"a {row.session_kind} walk cannot be saved as a proposal; only AI-built walks can",
            reason="WALK_NOT_AI_BUILT",
        )


def walk_proposal_name(row: WalkRow) -> str:
    """The default display name of a walk's proposal."""
    return f"AI-built flow from {row.ticket_ref}"


async def flow(conn: Connection, flow_id: uuid.UUID, name: str, *, lock: bool = False) -> FlowRow:
    """The flow; NOT_FOUND (naming ``name`` as given) when it is not the account's."""
    return found(await storage.get_flow(conn, flow_id, lock=lock), "flow", name)


async def proposal(conn: Connection, proposal_id: uuid.UUID, name: str, *, lock: bool = False) -> ProposalRow:
    return found(await storage.get_proposal(conn, proposal_id, lock=lock), "flow proposal", name)


class Flows:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        description: str,
        tree: Tree,
        category: CategoryRef | None = None,
        tags: list[str] | None = None,
    ) -> FlowRow:
        async with self._db.transaction(principal.account_id) as conn:
            return await storage.insert_flow(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=name,
                description=description,
                tree=tree,
                category_id=await catalogue.referable(conn, category),
                tags=tags or [],
                created_by=principal.user_id,
                created_by_name=principal.display_name or None,
            )

    async def get(self, account: uuid.UUID, flow_id: uuid.UUID, name: str) -> FlowRow:
        async with self._db.transaction(account) as conn:
            return await flow(conn, flow_id, name)

    async def page(
        self, account: uuid.UUID, *, where: FlowFilter, order: str, after: Any, limit: int
    ) -> list[FlowRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_flows(conn, where=where, order=order, after=after, limit=limit)

    async def update(
        self,
        account: uuid.UUID,
        flow_id: uuid.UUID,
        name: str,
        changes: FlowChanges,
        expected_revision: int | None,
    ) -> FlowRow:
        async with self._db.transaction(account) as conn:
            row = await flow(conn, flow_id, name, lock=True)
            values = changed_values(row, changes, expected_revision)
            if changes.category is not None:
                values["category_id"] = await catalogue.referable(conn, changes.category)
            return await storage.update_flow(conn, row.id, **values)

    async def publish(self, account: uuid.UUID, flow_id: uuid.UUID, name: str) -> FlowRow:
        async with self._db.transaction(account) as conn:
            check_publishable(await flow(conn, flow_id, name, lock=True))
            return await storage.update_flow(conn, flow_id, status="published")

    async def archive(self, account: uuid.UUID, flow_id: uuid.UUID, name: str) -> FlowRow:
        async with self._db.transaction(account) as conn:
            await flow(conn, flow_id, name, lock=True)
            return await storage.update_flow(conn, flow_id, status="archived")


class Proposals:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, principal: Principal, *, name: str, description: str, tree: Tree, source: str, rationale: str
    ) -> ProposalRow:
        async with self._db.transaction(principal.account_id) as conn:
            return await storage.insert_proposal(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=name,
                description=description,
                tree=tree,
                source=source,
                rationale=rationale,
                created_by=principal.user_id,
                created_by_name=principal.display_name or None,
            )

    async def get(self, account: uuid.UUID, proposal_id: uuid.UUID, name: str) -> ProposalRow:
        async with self._db.transaction(account) as conn:
            return await proposal(conn, proposal_id, name)

    async def save_walk(
        self,
        principal: Principal,
        walk_id: uuid.UUID,
        name: str,
        *,
        display_name: str,
        description: str,
        rationale: str,
    ) -> ProposalRow:
        """The proposal made of an AI-built walk: its tree snapshot and its path
        (as of now), the walk and its technician as provenance. One per walk:
        the walk's lock serializes saves, and a second save returns the first."""
        async with self._db.transaction(principal.account_id) as conn:
            row = found(await storage.get_walk(conn, walk_id, lock=True), "walk", name)
            check_savable(row, principal)
            existing = await storage.proposal_of_walk(conn, row.id)
            if existing is not None:
                return existing
            tree = (await storage.walk_trees(conn, [row.id]))[row.id]  # AI-built walks have one
            made = await storage.insert_proposal(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=display_name or walk_proposal_name(row),
                description=description,
                tree=tree,
                source="walk",
                rationale=rationale,
                created_by=principal.user_id,
                created_by_name=principal.display_name or None,
                source_walk_id=row.id,
                source_ticket_ref=row.ticket_ref,
                source_user_id=row.created_by_user_id,
                source_user_name=row.created_by_name,
                walked_path=row.walked_path,
            )
        return dataclasses.replace(made, tree=tree)

    async def page(
        self, account: uuid.UUID, *, status: str | None, after: tuple[Any, uuid.UUID] | None, limit: int
    ) -> list[ProposalRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_proposals(conn, status=status, after=after, limit=limit)

    async def approve(
        self, principal: Principal, proposal_id: uuid.UUID, name: str
    ) -> tuple[ProposalRow, FlowRow]:
        """The proposal, approved, and the published flow made of it (its tree in the row)."""
        async with self._db.transaction(principal.account_id) as conn:
            row = await proposal(conn, proposal_id, name, lock=True)
            check_reviewable(row)
            assert row.tree is not None  # read with its tree
            made = await storage.insert_flow(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                name=row.name,
                description=row.description,
                tree=row.tree,
                status="published",
                created_by=principal.user_id,
                created_by_name=principal.display_name or None,
            )
            approved = await storage.review_proposal(
                conn,
                row.id,
                status="approved",
                reviewer_id=principal.user_id,
                reviewer_name=principal.display_name or None,
                flow_id=made.id,
            )
        return approved, dataclasses.replace(made, tree=row.tree)

    async def reject(self, principal: Principal, proposal_id: uuid.UUID, name: str) -> ProposalRow:
        async with self._db.transaction(principal.account_id) as conn:
            check_reviewable(await proposal(conn, proposal_id, name, lock=True))
            return await storage.review_proposal(
                conn,
                proposal_id,
                status="rejected",
                reviewer_id=principal.user_id,
                reviewer_name=principal.display_name or None,
            )
