"""SQL for flows, proposals and walks. Functions take the RPC's connection
(tenant already set), never commit, and return typed rows."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Row,
    Select,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.search import Search, tsquery
from services.walks.tables import flow_categories, flow_proposals, flows, l1_walk_sessions

F, P, W, C = flows, flow_proposals, l1_walk_sessions, flow_categories
Tree = dict[str, Any]  # a decision tree as stored (see services.walks.trees)
Connection = AsyncConnection  # what the domain modules pass through, unopened


@dataclass(frozen=True, slots=True)
class FlowRow:
    account_id: uuid.UUID
    id: uuid.UUID
    name: str
    description: str
    version: int
    status: str  # draft | published | archived
    created_by: uuid.UUID
    revision: int
    create_time: datetime
    update_time: datetime
    tree: Tree | None = None  # None when read without it
    created_by_name: str | None = None
    category_id: uuid.UUID | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    usage_count: int = 0
    rank: float = 0.0  # a search's relevance, when listed by one


@dataclass(frozen=True, slots=True)
class CategoryRow:
    account_id: uuid.UUID
    id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str
    depth: int
    create_time: datetime


class CategoryNameTaken(Exception):
    """A sibling of the category has its name (the transaction is aborted)."""


@dataclass(frozen=True, slots=True)
class ProposalRow:
    account_id: uuid.UUID
    id: uuid.UUID
    name: str
    description: str
    source: str  # user | ai_analysis
    rationale: str
    status: str  # pending | approved | rejected
    reviewer_id: uuid.UUID | None
    review_time: datetime | None
    flow_id: uuid.UUID | None
    created_by: uuid.UUID
    create_time: datetime
    tree: Tree | None = None  # None when read without it
    created_by_name: str | None = None
    reviewer_name: str | None = None
    source_walk_id: uuid.UUID | None = None  # source 'walk': provenance below
    source_ticket_ref: str | None = None
    source_user_id: uuid.UUID | None = None
    source_user_name: str | None = None
    walked_path: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class WalkRow:
    """A walk without its tree snapshot (up to 500 nodes, never changed after
    the walk starts): steps touch only the small columns."""

    id: uuid.UUID
    account_id: uuid.UUID
    created_by_user_id: uuid.UUID
    acting_as: str | None
    ticket_ref: str
    ticket_kind: str
    session_kind: str  # flow | proposal | adhoc | ai_build
    flow_id: uuid.UUID | None
    flow_proposal_id: uuid.UUID | None
    flow_version: int | None
    escalation_session_id: uuid.UUID | None
    escalation_request_id: uuid.UUID | None
    current_node_id: str | None
    walked_path: list[dict[str, Any]]
    walk_notes: list[dict[str, Any]]
    status: str  # active | resolved | escalated | abandoned
    resolution_summary: str | None
    helpful: bool | None
    escalation_reason: str | None
    escalation_reason_category: str | None
    start_time: datetime
    last_step_time: datetime
    end_time: datetime | None
    has_tree: bool
    created_by_name: str | None = None


def _flow(row: Row[Any]) -> FlowRow:
    return FlowRow(**row._mapping)


def _proposal(row: Row[Any]) -> ProposalRow:
    return ProposalRow(**row._mapping)


def _walk(row: Row[Any]) -> WalkRow:
    return WalkRow(**row._mapping)


# A flow as read: every column but its search document.
FLOW = [c for c in F.c if c.name != "search"]


async def insert_flow(conn: AsyncConnection, **values: Any) -> FlowRow:
    """The new flow's row without its tree (the caller has it; it can be megabytes)."""
    returned = [c for c in FLOW if c.name != "tree"]
    return _flow((await conn.execute(insert(F).values(**values).returning(*returned))).one())


async def get_flow(conn: AsyncConnection, flow_id: uuid.UUID, *, lock: bool = False) -> FlowRow | None:
    query = select(*FLOW).where(F.c.id == flow_id)
    row = (await conn.execute(query.with_for_update(of=F) if lock else query)).first()
    return None if row is None else _flow(row)


async def update_flow(conn: AsyncConnection, flow_id: uuid.UUID, **values: Any) -> FlowRow:
    values.update(revision=F.c.revision + 1, update_time=func.now())
    query = update(F).where(F.c.id == flow_id).values(**values).returning(*FLOW)
    return _flow((await conn.execute(query)).one())


async def count_walk_started(conn: AsyncConnection, flow_id: uuid.UUID) -> None:
    """One more walk started on the flow (neither a change nor a new revision)."""
    await conn.execute(update(F).where(F.c.id == flow_id).values(usage_count=F.c.usage_count + 1))


@dataclass(frozen=True, slots=True)
class FlowFilter:
    status: str | None = None
    search: Search | None = None
    category_id: uuid.UUID | None = None  # with its subcategories
    tag: str | None = None


async def list_flows(
    conn: AsyncConnection, *, where: FlowFilter, order: str, after: Sequence[Any] | None, limit: int
) -> list[FlowRow]:
    """``order`` is name (ascending), relevance (needs a search), recency or
    usage (descending); ``after`` the keyset position of the previous page's
    last row. Filters combine."""
    ts_query = tsquery(where.search) if where.search is not None else None
    rank_expr: ColumnElement[Any] = (
        cast(func.ts_rank(F.c.search, ts_query), Float) if ts_query is not None else literal(0.0, Float)
    )
    statement: Select[Any] = select(*FLOW, rank_expr.label("rank"))
    if ts_query is not None:
        statement = statement.where(F.c.search.op("@@")(ts_query))
    elif where.search is not None:  # a query with no term left matches nothing
        statement = statement.where(false())
    if where.status:
        statement = statement.where(F.c.status == where.status)
    if where.tag:
        statement = statement.where(F.c.tags.contains([where.tag]))
    if where.category_id is not None:
        subtree = select(C.c.id).where(C.c.id == where.category_id).cte("subtree", recursive=True)
        subtree = subtree.union_all(select(C.c.id).where(C.c.parent_id == subtree.c.id))
        statement = statement.where(F.c.category_id.in_(select(subtree.c.id)))
    if order == "name":
        statement = statement.order_by(F.c.name, F.c.id)
        if after is not None:
            statement = statement.where(
                tuple_(F.c.name, F.c.id) > tuple_(literal(after[0]), literal(after[1]))
            )
    else:
        key = {"relevance": rank_expr, "usage": F.c.usage_count, "recency": F.c.create_time}[order]
        statement = statement.order_by(key.desc(), F.c.id.desc())
        if after is not None:
            first, last_id = after
            statement = statement.where(
                or_(key < literal(first), and_(key == literal(first), F.c.id < literal(last_id)))
            )
    return [_flow(r) for r in await conn.execute(statement.limit(limit))]


# --- categories -------------------------------------------------------------------


def _category(row: Row[Any]) -> CategoryRow:
    return CategoryRow(**row._mapping)


async def insert_category(conn: AsyncConnection, **values: Any) -> CategoryRow:
    """CategoryNameTaken when a sibling has the name (the caller holds the parent)."""
    try:
        return _category((await conn.execute(insert(C).values(**values).returning(C))).one())
    except IntegrityError as exc:
        raise CategoryNameTaken(values["name"]) from exc


async def get_category(
    conn: AsyncConnection, category_id: uuid.UUID, *, lock: str | None = None
) -> CategoryRow | None:
    """``lock``: "update" (to delete it) or "key_share" (to refer to it: holds off a delete)."""
    query = select(C).where(C.c.id == category_id)
    if lock == "update":
        query = query.with_for_update()
    elif lock == "key_share":
        query = query.with_for_update(read=True, key_share=True)
    row = (await conn.execute(query)).first()
    return None if row is None else _category(row)


async def list_categories(
    conn: AsyncConnection, *, parent_id: uuid.UUID | None, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[CategoryRow]:
    query = select(C).order_by(C.c.name, C.c.id).limit(limit)
    if parent_id is not None:
        query = query.where(C.c.parent_id == parent_id)
    if after:
        query = query.where(tuple_(C.c.name, C.c.id) > tuple_(literal(after[0]), literal(after[1])))
    return [_category(r) for r in await conn.execute(query)]


async def category_in_use(conn: AsyncConnection, category_id: uuid.UUID) -> tuple[bool, bool]:
    """Whether the category has subcategories, and whether it has flows."""
    children = exists().where(C.c.parent_id == category_id)
    used = exists().where(F.c.category_id == category_id)
    row = (await conn.execute(select(children.label("children"), used.label("flows")))).one()
    return bool(row.children), bool(row.flows)


async def delete_category(conn: AsyncConnection, category_id: uuid.UUID) -> None:
    await conn.execute(C.delete().where(C.c.id == category_id))


async def insert_proposal(conn: AsyncConnection, **values: Any) -> ProposalRow:
    """The new proposal's row without its tree (the caller has it)."""
    return _proposal((await conn.execute(insert(P).values(**values).returning(*_without_tree(P)))).one())


async def proposal_of_walk(conn: AsyncConnection, walk_id: uuid.UUID) -> ProposalRow | None:
    """The proposal saved from the walk, if any (with its tree)."""
    row = (await conn.execute(select(P).where(P.c.source_walk_id == walk_id))).first()
    return None if row is None else _proposal(row)


def _without_tree(table: Any) -> list[Any]:
    return [c for c in table.c if c.name != "tree"]


async def get_proposal(
    conn: AsyncConnection, proposal_id: uuid.UUID, *, lock: bool = False
) -> ProposalRow | None:
    query = select(P).where(P.c.id == proposal_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _proposal(row)


async def review_proposal(
    conn: AsyncConnection,
    proposal_id: uuid.UUID,
    *,
    status: str,
    reviewer_id: uuid.UUID,
    reviewer_name: str | None,
    flow_id: uuid.UUID | None = None,
) -> ProposalRow:
    """Records the review (at the database's time) and returns the proposal."""
    query = (
        update(P)
        .where(P.c.id == proposal_id)
        .values(
            status=status,
            reviewer_id=reviewer_id,
            reviewer_name=reviewer_name,
            review_time=func.now(),
            flow_id=flow_id,
        )
        .returning(P)
    )
    return _proposal((await conn.execute(query)).one())


async def list_proposals(
    conn: AsyncConnection, *, status: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[ProposalRow]:
    query = select(P).order_by(P.c.create_time.desc(), P.c.id.desc()).limit(limit)
    if status:
        query = query.where(P.c.status == status)
    if after:
        query = query.where(tuple_(P.c.create_time, P.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return [_proposal(r) for r in await conn.execute(query)]


async def lock_ticket(conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str) -> None:
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"walk-start:{user_id}:{ticket_ref}"},
    )


# A walk as the service reads and writes it: every column but the tree snapshot
# (up to 500 nodes, never changed after the walk starts), plus whether it has
# one. Steps touch only the small columns; the snapshot is read with
# walk_trees() when a process has not converted it yet, and a step looks up its
# node in SQL (walk_node()).
_HAS_TREE = func.coalesce(func.jsonb_typeof(W.c.tree) == "object", False)  # ad-hoc walks: JSON null
WALK = [c for c in W.c if c.name != "tree"] + [_HAS_TREE.label("has_tree")]


async def walk_trees(conn: AsyncConnection, walk_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Tree]:
    query = select(W.c.id, W.c.tree).where(W.c.id.in_(walk_ids), _HAS_TREE)
    return {row.id: row.tree for row in await conn.execute(query)}


_NODE = text(
    "SELECT jsonb_path_query_first(tree, '$.nodes[*] ? (@.id == $id)', jsonb_build_object('id', CAST(:node AS text)))"
    " AS node FROM walks.l1_walk_sessions WHERE id = :walk"
).columns(node=JSONB)


async def walk_node(conn: AsyncConnection, walk_id: uuid.UUID, node_id: str) -> dict[str, Any] | None:
    """One node of a walk's tree snapshot, found by PostgreSQL (no tree decoded here)."""
    node: dict[str, Any] | None = (await conn.execute(_NODE, {"walk": walk_id, "node": node_id})).scalar()
    return node


async def active_walk_for(conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str) -> WalkRow | None:
    query = (
        select(*WALK)
        .where(W.c.created_by_user_id == user_id, W.c.ticket_ref == ticket_ref, W.c.status == "active")
        .order_by(W.c.start_time.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _walk(row)


async def insert_walk(conn: AsyncConnection, **values: Any) -> WalkRow:
    return _walk((await conn.execute(insert(W).values(**values).returning(*WALK))).one())


async def get_walk(conn: AsyncConnection, walk_id: uuid.UUID, *, lock: bool = False) -> WalkRow | None:
    query = select(*WALK).where(W.c.id == walk_id)
    row = (await conn.execute(query.with_for_update(of=W) if lock else query)).first()
    return None if row is None else _walk(row)


async def update_walk(conn: AsyncConnection, walk_id: uuid.UUID, **values: Any) -> WalkRow:
    return _walk(
        (await conn.execute(update(W).where(W.c.id == walk_id).values(**values).returning(*WALK))).one()
    )


async def list_walks(
    conn: AsyncConnection,
    *,
    status: str | None,
    ticket_ref: str | None,
    kind: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WalkRow]:
    query = select(*WALK).order_by(W.c.start_time.desc(), W.c.id.desc()).limit(limit)
    if status:
        query = query.where(W.c.status == status)
    if ticket_ref:
        query = query.where(W.c.ticket_ref == ticket_ref)
    if kind:
        query = query.where(W.c.session_kind == kind)
    if after:
        query = query.where(tuple_(W.c.start_time, W.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return [_walk(r) for r in await conn.execute(query)]


async def abandon_stale(conn: AsyncConnection, *, before: datetime, now: datetime) -> int:
    """Abandons the account's active walks whose last step is before ``before``."""
    result = await conn.execute(
        update(W)
        .where(W.c.status == "active", W.c.last_step_time < before)
        .values(status="abandoned", end_time=now)
        .returning(W.c.id)
    )
    return len(result.all())


async def accounts_with_active_walks(conn: AsyncConnection, limit: int = 10_000) -> list[uuid.UUID]:
    rows = await conn.execute(text("SELECT * FROM walks.accounts_with_active_walks(:n)"), {"n": limit})
    return list(rows.scalars().all())
