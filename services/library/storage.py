"""SQL for script templates and draft templates. Functions take the RPC's
connection (tenant already set), never commit, and return typed rows; a
template name taken is ``NameTaken``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Row,
    and_,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from services.core.search import Search, tsquery
from services.library.tables import draft_templates, script_templates

T, D = script_templates, draft_templates
Connection = AsyncConnection  # what the domain modules pass through, unopened


@dataclass(frozen=True, slots=True)
class TemplateRow:
    account_id: uuid.UUID
    id: uuid.UUID
    name: str
    description: str
    language: str
    body: str
    parameters: list[dict[str, Any]]
    tags: list[str]
    usage_count: int
    last_use_time: datetime | None
    source_session_id: uuid.UUID | None
    source_user_id: uuid.UUID | None
    source_user_name: str | None
    source_ticket_ref: str | None
    created_by: uuid.UUID
    revision: int
    create_time: datetime
    update_time: datetime
    rank: float = 0.0  # a search's relevance, when listed by one


@dataclass(frozen=True, slots=True)
class DraftRow:
    account_id: uuid.UUID
    id: uuid.UUID
    script_body: str
    language: str
    suggested_name: str
    templatized_body: str | None
    parameters: list[dict[str, Any]] | None
    status: str  # pending | approved | rejected
    reviewer_id: uuid.UUID | None
    review_time: datetime | None
    review_note: str | None
    template_id: uuid.UUID | None
    source_session_id: uuid.UUID | None
    source_user_id: uuid.UUID | None
    source_user_name: str | None
    source_ticket_ref: str | None
    source_lane_item_id: str | None
    request_id: uuid.UUID | None
    request_fingerprint: str | None
    redactions: list[dict[str, Any]]  # [{parameter, kind, line}]: what secret parameters replaced
    created_by: uuid.UUID
    create_time: datetime


class NameTaken(Exception):
    """Another template of the account has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_TEMPLATE = [c for c in T.c if c.name != "search"]


def _template(row: Row[Any]) -> TemplateRow:
    return TemplateRow(**row._mapping)


def _draft(row: Row[Any]) -> DraftRow:
    return DraftRow(**row._mapping)


# --- templates ------------------------------------------------------------------


async def insert_template(conn: AsyncConnection, **values: Any) -> TemplateRow:
    """NameTaken when the account has a template of that name (the
    transaction is then aborted: the caller ends it)."""
    try:
        return _template((await conn.execute(insert(T).values(**values).returning(*_TEMPLATE))).one())
    except IntegrityError as exc:
        raise NameTaken(values["name"]) from exc


async def get_template(
    conn: AsyncConnection, template_id: uuid.UUID, *, lock: bool = False
) -> TemplateRow | None:
    query = select(*_TEMPLATE).where(T.c.id == template_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _template(row)


async def update_template(conn: AsyncConnection, template_id: uuid.UUID, **values: Any) -> TemplateRow:
    """NameTaken when a new name is another template's."""
    values.update(revision=T.c.revision + 1, update_time=func.now())
    query = update(T).where(T.c.id == template_id).values(**values).returning(*_TEMPLATE)
    try:
        return _template((await conn.execute(query)).one())
    except IntegrityError as exc:
        raise NameTaken(values.get("name", "")) from exc


async def delete_template(conn: AsyncConnection, template_id: uuid.UUID) -> bool:
    result = await conn.execute(T.delete().where(T.c.id == template_id).returning(T.c.id))
    return result.first() is not None


async def record_use(conn: AsyncConnection, template_id: uuid.UUID) -> int | None:
    query = (
        update(T)
        .where(T.c.id == template_id)
        .values(usage_count=T.c.usage_count + 1, last_use_time=func.now())
        .returning(T.c.usage_count)
    )
    count = (await conn.execute(query)).scalar()
    return None if count is None else int(count)


async def list_templates(
    conn: AsyncConnection,
    *,
    search: Search | None,
    tag: str | None,
    language: str | None,
    order: str,
    after: Sequence[Any] | None,
    limit: int,
) -> list[TemplateRow]:
    """``order`` is relevance (needs ``search``), usage or recency; ``after`` the
    keyset position of the last row of the previous page."""
    ts_query = tsquery(search) if search is not None else None
    rank_expr = (
        cast(func.ts_rank(T.c.search, ts_query), Float) if ts_query is not None else literal(0.0, Float)
    )
    rank = rank_expr.label("rank")
    statement = select(*_TEMPLATE, rank)
    if ts_query is not None:
        statement = statement.where(T.c.search.op("@@")(ts_query))
    elif search is not None:  # a query with no term left matches nothing
        statement = statement.where(false())
    if tag:
        statement = statement.where(T.c.tags.contains([tag]))
    if language:
        statement = statement.where(T.c.language == language)
    keys: tuple[ColumnElement[Any], ColumnElement[Any]]
    if order == "relevance":
        keys = (rank_expr, T.c.id)
        statement = statement.order_by(rank.desc(), T.c.id.desc())
    elif order == "usage":
        keys = (T.c.usage_count, T.c.id)
        statement = statement.order_by(T.c.usage_count.desc(), T.c.id.desc())
    else:
        keys = (T.c.create_time, T.c.id)
        statement = statement.order_by(T.c.create_time.desc(), T.c.id.desc())
    if after is not None:
        first, last_id = after
        statement = statement.where(
            or_(keys[0] < literal(first), and_(keys[0] == literal(first), T.c.id < literal(last_id)))
        )
    return [TemplateRow(**r._mapping) for r in await conn.execute(statement.limit(limit))]


# --- drafts ---------------------------------------------------------------------


async def insert_draft(conn: AsyncConnection, **values: Any) -> DraftRow | None:
    """Inserts unless the same (session, lane item) or request id exists: None then."""
    statement = insert(D).values(**values).on_conflict_do_nothing().returning(D)
    row = (await conn.execute(statement)).first()
    return None if row is None else _draft(row)


async def draft_by_request(conn: AsyncConnection, request_id: uuid.UUID) -> DraftRow | None:
    row = (await conn.execute(select(D).where(D.c.request_id == request_id))).first()
    return None if row is None else _draft(row)


async def drafts_of_session(conn: AsyncConnection, session_id: uuid.UUID) -> list[DraftRow]:
    query = select(D).where(D.c.source_session_id == session_id).order_by(D.c.create_time, D.c.id)
    return [_draft(r) for r in await conn.execute(query)]


async def get_draft(conn: AsyncConnection, draft_id: uuid.UUID, *, lock: bool = False) -> DraftRow | None:
    query = select(D).where(D.c.id == draft_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _draft(row)


async def update_draft(conn: AsyncConnection, draft_id: uuid.UUID, **values: Any) -> DraftRow:
    return _draft(
        (await conn.execute(update(D).where(D.c.id == draft_id).values(**values).returning(D))).one()
    )


async def reject_draft(
    conn: AsyncConnection, draft_id: uuid.UUID, *, reviewer_id: uuid.UUID, note: str
) -> DraftRow:
    """Records the rejection at the database's time."""
    return await update_draft(
        conn, draft_id, status="rejected", reviewer_id=reviewer_id, review_note=note, review_time=func.now()
    )


async def list_drafts(
    conn: AsyncConnection, *, status: str | None, after: tuple[Any, uuid.UUID] | None, limit: int
) -> list[DraftRow]:
    query = select(D).order_by(D.c.create_time.desc(), D.c.id.desc()).limit(limit)
    if status:
        query = query.where(D.c.status == status)
    if after:
        query = query.where(tuple_(D.c.create_time, D.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return [_draft(r) for r in await conn.execute(query)]


# The badge: one scan of the partial index on pending drafts.
COUNT_PENDING = select(func.count()).select_from(D).where(D.c.status == "pending")


async def count_pending(conn: AsyncConnection) -> int:
    return int((await conn.execute(COUNT_PENDING)).scalar_one())
