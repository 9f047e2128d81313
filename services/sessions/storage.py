"""SQL for sessions, facts, fixes and note previews.

Functions take the RPC's connection (tenant already set) and never commit.
Row-level security scopes every statement to the caller's account, so a
missing row and another account's row look the same: None. The hot reads
(get a session, list its facts) call tenant read functions through
``Database.read`` (migration sessions_0003).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, and_, func, literal, literal_column, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import Database, Record
from services.sessions.tables import (
    ai_sessions,
    note_previews,
    outbox,
    session_facts,
    session_suggested_fixes,
)

S, F, X, P = ai_sessions, session_facts, session_suggested_fixes, note_previews


# --- sessions ---------------------------------------------------------------


async def lock_ticket(conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str) -> None:
    """Serialises session creation per (account, user, ticket) for this transaction."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"session-create:{user_id}:{ticket_ref}"},
    )


async def insert_session(conn: AsyncConnection, **values: Any) -> Row[Any]:
    return (await conn.execute(insert(S).values(**values).returning(S))).one()


async def active_session_for(
    conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str
) -> Row[Any] | None:
    query = (
        select(S)
        .where(S.c.created_by == user_id, S.c.ticket_ref == ticket_ref, S.c.status == "active")
        .order_by(S.c.create_time.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def session_by_request_id(conn: AsyncConnection, request_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(S).where(S.c.request_id == request_id))).first()


async def read_session(db: Database, session_id: uuid.UUID) -> Record | None:
    """A session for reading only, in one round trip (tenant read function)."""
    rows = await db.read("sessions.read_session", session_id)
    return rows[0] if rows else None


async def get_session(conn: AsyncConnection, session_id: uuid.UUID, *, lock: bool = False) -> Row[Any] | None:
    query = select(S).where(S.c.id == session_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


# The task lane without its items' detail, script and output (which can be
# megabytes), each item saying whether it had any: what a BASIC list reads.
_BASIC_LANE: Any = literal_column(
    """coalesce((
        SELECT jsonb_agg(
            e - 'detail' - 'script_body' - 'output'
            || jsonb_build_object('has_content',
                coalesce(e->>'detail', '') <> '' OR coalesce(e->>'script_body', '') <> ''
                OR coalesce(e->>'output', '') <> '')
            ORDER BY n)
        FROM jsonb_array_elements(sessions.ai_sessions.pending_task_lane) WITH ORDINALITY AS x(e, n)
    ), '[]'::jsonb)"""
).label("pending_task_lane")
_BASIC_COLUMNS: list[Any] = [c for c in S.c if c.name != "pending_task_lane"] + [_BASIC_LANE]


async def list_sessions(
    conn: AsyncConnection,
    *,
    status: str | None,
    ticket_ref: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    whole_lanes: bool = False,
) -> Sequence[Row[Any]]:
    columns = list(S.c) if whole_lanes else _BASIC_COLUMNS
    query = select(*columns).order_by(S.c.create_time.desc(), S.c.id.desc()).limit(limit)
    if status:
        query = query.where(S.c.status == status)
    if ticket_ref:
        query = query.where(S.c.ticket_ref == ticket_ref)
    if after:
        query = query.where(tuple_(S.c.create_time, S.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return (await conn.execute(query)).all()


async def update_session(
    conn: AsyncConnection, session_id: uuid.UUID, *, bump: bool = True, **values: Any
) -> Row[Any]:
    """Changes a session; with ``bump`` (the default) its state version too."""
    if bump:
        values["state_version"] = S.c.state_version + 1
    values["update_time"] = func.now()
    query = update(S).where(S.c.id == session_id).values(**values).returning(S)
    return (await conn.execute(query)).one()


# --- facts ------------------------------------------------------------------


async def insert_fact(conn: AsyncConnection, **values: Any) -> Row[Any]:
    return (await conn.execute(insert(F).values(**values).returning(F))).one()


async def get_fact(conn: AsyncConnection, session_id: uuid.UUID, fact_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(F).where(F.c.session_id == session_id, F.c.id == fact_id))).first()


async def list_facts(
    db: Database,
    session_id: uuid.UUID,
    *,
    show_deleted: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Record] | None:
    """A page of facts in (create_time, id) order after a keyset position, in
    one round trip (tenant read function); None when the session is not there."""
    after_time, after_id = after if after is not None else (None, None)
    try:
        return await db.read("sessions.list_facts", session_id, show_deleted, after_time, after_id, limit)
    except asyncpg.NoDataFoundError:
        return None


async def active_fact_texts(conn: AsyncConnection, session_id: uuid.UUID, *, limit: int = 500) -> list[str]:
    query = (
        select(F.c.text)
        .where(F.c.session_id == session_id, F.c.deleted_at.is_(None))
        .order_by(F.c.create_time.desc(), F.c.id.desc())
        .limit(limit)
    )
    return list(reversed((await conn.execute(query)).scalars().all()))


async def update_fact(conn: AsyncConnection, fact_id: uuid.UUID, **values: Any) -> Row[Any]:
    values["update_time"] = func.now()
    return (await conn.execute(update(F).where(F.c.id == fact_id).values(**values).returning(F))).one()


# --- fixes ------------------------------------------------------------------


async def supersede_active_fix(conn: AsyncConnection, session_id: uuid.UUID) -> None:
    await conn.execute(
        update(X)
        .where(X.c.session_id == session_id, X.c.superseded_at.is_(None))
        .values(superseded_at=func.now())
    )


async def insert_fix(conn: AsyncConnection, **values: Any) -> Row[Any]:
    return (await conn.execute(insert(X).values(**values).returning(X))).one()


async def get_fix(conn: AsyncConnection, session_id: uuid.UUID, fix_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(X).where(X.c.session_id == session_id, X.c.id == fix_id))).first()


async def active_fix(conn: AsyncConnection, session_id: uuid.UUID) -> Row[Any] | None:
    query = select(X).where(X.c.session_id == session_id, X.c.superseded_at.is_(None))
    return (await conn.execute(query)).first()


async def list_fixes(
    conn: AsyncConnection, session_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Row[Any]]:
    query = (
        select(X)
        .where(X.c.session_id == session_id)
        .order_by(X.c.create_time.desc(), X.c.id.desc())
        .limit(limit)
    )
    if after:
        query = query.where(tuple_(X.c.create_time, X.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return (await conn.execute(query)).all()


async def decide_fix(conn: AsyncConnection, fix_id: uuid.UUID, status: str) -> Row[Any] | None:
    """Accepts or rejects a fix that is active and undecided; None otherwise."""
    query = (
        update(X)
        .where(and_(X.c.id == fix_id, X.c.superseded_at.is_(None), X.c.status == "proposed"))
        .values(status=status, decide_time=func.now())
        .returning(X)
    )
    return (await conn.execute(query)).first()


# --- note previews ------------------------------------------------------------


async def get_preview(
    conn: AsyncConnection, session_id: uuid.UUID, *, kind: str, state_version: int, fmt: str
) -> Row[Any] | None:
    query = select(P).where(
        P.c.session_id == session_id, P.c.kind == kind, P.c.state_version == state_version, P.c.format == fmt
    )
    return (await conn.execute(query)).first()


async def put_preview(conn: AsyncConnection, **values: Any) -> Row[Any]:
    """Stores a preview; when another replica stored it first, returns theirs."""
    stmt = insert(P).values(**values).on_conflict_do_nothing().returning(P)
    row = (await conn.execute(stmt)).first()
    if row is not None:
        return row
    existing = await get_preview(
        conn,
        values["session_id"],
        kind=values["kind"],
        state_version=values["state_version"],
        fmt=values["format"],
    )
    assert existing is not None
    return existing


# --- outbox ---------------------------------------------------------------------


async def insert_outbox(conn: AsyncConnection, **values: Any) -> None:
    """Records work for another service; a repeat (same topic and key) is ignored."""
    await conn.execute(insert(outbox).values(**values).on_conflict_do_nothing())


_DEAD = and_(outbox.c.dead_at.is_not(None), outbox.c.delivered_at.is_(None))
# A dead letter's columns: the payload stays in the database, its session comes along.
_LETTER: list[Any] = [c for c in outbox.c if c.name != "payload"] + [
    outbox.c.payload["session"].astext.label("session")
]


async def list_dead_letters(
    conn: AsyncConnection, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Row[Any]]:
    """Dead letters, newest first; the payload stays in the database."""
    query = select(*_LETTER).where(_DEAD).order_by(outbox.c.dead_at.desc(), outbox.c.id.desc()).limit(limit)
    if after:
        query = query.where(
            tuple_(outbox.c.dead_at, outbox.c.id) < tuple_(literal(after[0]), literal(after[1]))
        )
    return (await conn.execute(query)).all()


async def retry_dead_letter(conn: AsyncConnection, letter_id: uuid.UUID) -> Row[Any] | None:
    """Makes a dead letter due now with its attempts counted afresh; None when
    there is no such dead letter. Returns the row as it was (still dead)."""
    before = (
        await conn.execute(select(*_LETTER).where(outbox.c.id == letter_id, _DEAD).with_for_update())
    ).first()
    if before is not None:
        await conn.execute(
            update(outbox)
            .where(outbox.c.id == letter_id)
            .values(dead_at=None, attempts=0, next_attempt_at=func.now())
        )
    return before
