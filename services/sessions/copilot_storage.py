"""SQL for the copilot conversation: a session's messages and their proposals,
and the account's monthly AI token usage.

Functions take the RPC's connection (tenant already set) and never commit;
rows leave as typed rows (``services.sessions.rows``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, func, literal, literal_column, select, tuple_, update
from sqlalchemy.dialects.postgresql import REGCONFIG, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from services.sessions.rows import AiUsage, Citation, Message, Proposal, SimilarSession
from services.sessions.tables import (
    SESSION_SEARCH,
    ai_sessions,
    ai_usage,
    message_proposals,
    session_messages,
    session_suggested_fixes,
)

M, P, U = session_messages, message_proposals, ai_usage
S, X = ai_sessions, session_suggested_fixes


def _proposal(row: Row[Any]) -> Proposal:
    return Proposal(
        id=row.id,
        session_id=row.session_id,
        message_id=row.message_id,
        ordinal=row.ordinal,
        kind=row.kind,
        tool_call_id=row.tool_call_id,
        payload=row.payload,
        state=row.state,
        result=row.result,
        decided_by=row.decided_by,
        decided_by_name=row.decided_by_name,
        decide_time=row.decide_time,
        create_time=row.create_time,
    )


def _message(row: Row[Any], proposals: Sequence[Proposal] = ()) -> Message:
    return Message(
        id=row.id,
        session_id=row.session_id,
        role=row.role,
        text=row.text,
        author=row.author,
        author_name=row.author_name,
        tool_calls=row.tool_calls,
        model=row.model,
        tier=row.tier,
        prompt_version=row.prompt_version,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        partial=row.partial,
        state_version=row.state_version,
        create_time=row.create_time,
        proposals=tuple(proposals),
        citations=tuple(Citation(name=c["name"], title=c["title"]) for c in row.citations),
    )


async def conversation_size(conn: AsyncConnection, session_id: uuid.UUID) -> tuple[int, int]:
    """(messages, characters of text) of the session's conversation."""
    query = select(func.count(), func.coalesce(func.sum(func.length(M.c.text)), 0)).where(
        M.c.session_id == session_id
    )
    count, chars = (await conn.execute(query)).one()
    return int(count), int(chars)


async def recent_messages(conn: AsyncConnection, session_id: uuid.UUID, *, limit: int) -> list[Message]:
    """The newest ``limit`` messages (without proposals), oldest first."""
    query = (
        select(M)
        .where(M.c.session_id == session_id)
        .order_by(M.c.create_time.desc(), M.c.id.desc())
        .limit(limit)
    )
    return [_message(row) for row in reversed((await conn.execute(query)).all())]


async def insert_message(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    session_id: uuid.UUID,
    role: str,
    text: str,
    author: uuid.UUID,
    author_name: str | None,
    state_version: int,
    create_time: datetime,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "",
    tier: str = "",
    prompt_version: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    partial: bool = False,
    proposals: Sequence[tuple[str, str, dict[str, Any]]] = (),
    citations: Sequence[Citation] = (),
) -> Message:
    """A new message, and its proposals ((kind, tool call id, payload), pending) in order."""
    message_id = uuid.uuid4()
    row = (
        await conn.execute(
            insert(M)
            .values(
                account_id=account_id,
                id=message_id,
                session_id=session_id,
                role=role,
                text=text,
                author=author,
                author_name=author_name,
                tool_calls=tool_calls or [],
                model=model,
                tier=tier,
                prompt_version=prompt_version,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                partial=partial,
                citations=[{"name": c.name, "title": c.title} for c in citations],
                state_version=state_version,
                create_time=create_time,
            )
            .returning(M)
        )
    ).one()
    made: list[Proposal] = []
    if proposals:
        rows = await conn.execute(
            insert(P)
            .values(
                [
                    {
                        "account_id": account_id,
                        "id": uuid.uuid4(),
                        "session_id": session_id,
                        "message_id": message_id,
                        "ordinal": ordinal,
                        "kind": kind,
                        "tool_call_id": tool_call_id,
                        "payload": payload,
                    }
                    for ordinal, (kind, tool_call_id, payload) in enumerate(proposals)
                ]
            )
            .returning(P)
        )
        made = sorted((_proposal(r) for r in rows.all()), key=lambda p: p.ordinal)
    return _message(row, made)


async def list_messages(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    *,
    newest_first: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Message]:
    """A page of messages in (create_time, id) order (or reverse), each with
    its proposals, after a keyset position."""
    key = tuple_(M.c.create_time, M.c.id)
    query = select(M).where(M.c.session_id == session_id).limit(limit)
    if newest_first:
        query = query.order_by(M.c.create_time.desc(), M.c.id.desc())
    else:
        query = query.order_by(M.c.create_time, M.c.id)
    if after:
        position = tuple_(literal(after[0]), literal(after[1]))
        query = query.where(key < position if newest_first else key > position)
    rows = (await conn.execute(query)).all()
    by_message: dict[uuid.UUID, list[Proposal]] = {}
    if rows:
        found = await conn.execute(
            select(P).where(P.c.message_id.in_([r.id for r in rows])).order_by(P.c.message_id, P.c.ordinal)
        )
        for p in found.all():
            by_message.setdefault(p.message_id, []).append(_proposal(p))
    return [_message(row, by_message.get(row.id, ())) for row in rows]


async def get_proposal(
    conn: AsyncConnection, session_id: uuid.UUID, message_id: uuid.UUID, proposal_id: uuid.UUID
) -> Proposal | None:
    query = select(P).where(P.c.session_id == session_id, P.c.message_id == message_id, P.c.id == proposal_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _proposal(row)


async def decide_proposal(
    conn: AsyncConnection,
    proposal_id: uuid.UUID,
    state: str,
    *,
    result: str | None,
    decided_by: uuid.UUID,
    decided_by_name: str | None,
) -> Proposal | None:
    """Moves a pending proposal to ``state``; None when it is no longer pending."""
    query = (
        update(P)
        .where(P.c.id == proposal_id, P.c.state == "pending")
        .values(
            state=state,
            result=result,
            decided_by=decided_by,
            decided_by_name=decided_by_name,
            decide_time=func.now(),
        )
        .returning(P)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _proposal(row)


async def month_usage(conn: AsyncConnection, month: date) -> AiUsage:
    """The account's usage in ``month`` (its first day); zeros before its first call."""
    row = (
        await conn.execute(
            select(U.c.input_tokens, U.c.output_tokens, U.c.model_calls).where(U.c.month == month)
        )
    ).first()
    if row is None:
        return AiUsage(month=month)
    return AiUsage(
        month=month,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        model_calls=row.model_calls,
    )


async def add_usage(
    conn: AsyncConnection, *, account_id: uuid.UUID, month: date, input_tokens: int, output_tokens: int
) -> None:
    """Adds one model call and its tokens to the account's ``month`` (one
    statement: concurrent replies add up, none is lost)."""
    statement = insert(U).values(
        account_id=account_id,
        month=month,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model_calls=1,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[U.c.account_id, U.c.month],
            set_={
                "input_tokens": U.c.input_tokens + statement.excluded.input_tokens,
                "output_tokens": U.c.output_tokens + statement.excluded.output_tokens,
                "model_calls": U.c.model_calls + 1,
                "update_time": func.now(),
            },
        )
    )


_SEARCH: ColumnElement[Any] = literal_column(SESSION_SEARCH)


async def similar_resolved(
    conn: AsyncConnection, *, words: Sequence[str], exclude: uuid.UUID, limit: int
) -> list[SimilarSession]:
    """Resolved sessions matching any of ``words`` (letters and digits only),
    best first, each with its accepted fix (the newest); ``exclude`` left out.
    The match uses sessions_0014's GIN index (the same expression)."""
    if not words:
        return []
    query = func.to_tsquery(literal("english").cast(REGCONFIG), " | ".join(words))
    rank = func.ts_rank_cd(_SEARCH, query)
    rows = (
        await conn.execute(
            select(S.c.id, S.c.ticket_ref, S.c.title, S.c.problem, S.c.resolution_summary)
            .where(S.c.status == "resolved", S.c.id != exclude, _SEARCH.bool_op("@@")(query))
            .order_by(rank.desc(), S.c.end_time.desc().nulls_last(), S.c.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return []
    fixes: dict[uuid.UUID, Any] = {}
    accepted = await conn.execute(
        select(X.c.session_id, X.c.title, X.c.steps)
        .where(X.c.session_id.in_([r.id for r in rows]), X.c.status == "accepted")
        .order_by(X.c.session_id, X.c.decide_time.desc().nulls_last())
    )
    for fix in accepted.all():
        fixes.setdefault(fix.session_id, fix)
    return [
        SimilarSession(
            id=r.id,
            ticket_ref=r.ticket_ref,
            title=r.title,
            problem=r.problem,
            resolution_summary=r.resolution_summary or "",
            fix_title=fixes[r.id].title if r.id in fixes else "",
            fix_steps=tuple(str(step) for step in fixes[r.id].steps) if r.id in fixes else (),
        )
        for r in rows
    ]
