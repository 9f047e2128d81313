"""SQL for sessions, facts, fixes and note previews (the outbox's is in ``outbox_storage``).

Functions take the RPC's connection (tenant already set) and never commit.
Row-level security scopes every statement to the caller's account, so a
missing row and another account's row look the same: None. The hot reads
(get a session, list its facts) call tenant read functions through
``Database.read`` (migration sessions_0003). Every row leaves as a typed row
(``services.sessions.rows``), and database errors the domain has a word for
leave as that word (a reused request id: ``REQUEST_ID_REUSED``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, and_, func, literal, literal_column, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import Database, Record, TenantRead
from services.core.errors import AlreadyExists
from services.sessions.rows import (
    Fact,
    Fix,
    LaneItem,
    NoteKind,
    NoteRevision,
    Posting,
    Preview,
    Session,
)
from services.sessions.tables import (
    ai_sessions,
    note_previews,
    note_revisions,
    session_facts,
    session_suggested_fixes,
)

S, F, X, P, R = ai_sessions, session_facts, session_suggested_fixes, note_previews, note_revisions
# The RPC's transaction, as the domain passes it through (it never reads it).
Connection = AsyncConnection
# What a statement returns: a SQLAlchemy row, or a tenant read function's record.
_Row = Row[Any] | Record

# --- sessions ---------------------------------------------------------------


def _session(row: _Row) -> Session:
    return Session(
        id=row.id,
        ticket_ref=row.ticket_ref,
        ticket_kind=row.ticket_kind,
        title=row.title,
        problem=row.problem,
        status=row.status,
        created_by=row.created_by,
        request_fingerprint=row.request_fingerprint,
        pending_task_lane=row.pending_task_lane,
        resolution_summary=row.resolution_summary,
        escalation_reason=row.escalation_reason,
        resolution_note=Posting(
            markdown=row.resolution_note_markdown,
            post_time=row.resolution_note_post_time,
            external_id=row.resolution_note_external_id,
            state_version=row.resolution_note_state_version,
            revision=row.resolution_note_revision,
            posted_by=row.resolution_note_posted_by,
            posted_by_name=row.resolution_note_posted_by_name,
        ),
        escalation_package=Posting(
            markdown=row.escalation_package_markdown,
            post_time=row.escalation_package_post_time,
            external_id=row.escalation_package_external_id,
            state_version=row.escalation_package_state_version,
            revision=row.escalation_package_revision,
            posted_by=row.escalation_package_posted_by,
            posted_by_name=row.escalation_package_posted_by_name,
        ),
        state_version=row.state_version,
        create_time=row.create_time,
        update_time=row.update_time,
        end_time=row.end_time,
        created_by_name=row.created_by_name,
        assignee=row.assignee,
        assignee_name=row.assignee_name,
        closed_by=row.closed_by,
        closed_by_name=row.closed_by_name,
        escalated_walk_id=row.escalated_walk_id,
        abandon_reason=row.abandon_reason,
    )


def _maybe_session(row: _Row | None) -> Session | None:
    return None if row is None else _session(row)


async def lock_ticket(conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str) -> None:
    """Serialises session creation per (account, user, ticket) for this transaction."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"session-create:{user_id}:{ticket_ref}"},
    )


async def insert_session(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    id: uuid.UUID,
    ticket_ref: str,
    ticket_kind: str,
    title: str,
    problem: str,
    created_by: uuid.UUID,
    request_id: uuid.UUID | None,
    request_fingerprint: str | None,
    created_by_name: str | None = None,
    assignee: uuid.UUID | None = None,
    assignee_name: str | None = None,
    escalated_walk_id: uuid.UUID | None = None,
) -> Session:
    """A new session; ALREADY_EXISTS when its request id is taken, which the
    caller's lock cannot see (another ticket's request: ``REQUEST_ID_REUSED``),
    or when another session names the same escalated walk
    (``WALK_ALREADY_ESCALATED``)."""
    query = (
        insert(S)
        .values(
            account_id=account_id,
            id=id,
            ticket_ref=ticket_ref,
            ticket_kind=ticket_kind,
            title=title,
            problem=problem,
            created_by=created_by,
            request_id=request_id,
            request_fingerprint=request_fingerprint,
            created_by_name=created_by_name,
            assignee=assignee,
            assignee_name=assignee_name,
            escalated_walk_id=escalated_walk_id,
        )
        .returning(S)
    )
    try:
        return _session((await conn.execute(query)).one())
    except IntegrityError as exc:
        if "ai_sessions_escalated_walk_key" in str(exc.orig):
            raise AlreadyExists(
                f"walks/{escalated_walk_id} already opened a session", reason="WALK_ALREADY_ESCALATED"
            ) from exc
        if "ai_sessions_request_id_key" not in str(exc.orig):
            raise
        raise AlreadyExists(
            "request_id was already used by another caller or for another request",
            reason="REQUEST_ID_REUSED",
        ) from exc


async def active_session_for(conn: AsyncConnection, *, user_id: uuid.UUID, ticket_ref: str) -> Session | None:
    """The user's newest active session on the ticket: one assigned to them,
    or one they created that nobody is assigned to (what they may work on)."""
    theirs = or_(S.c.assignee == user_id, and_(S.c.assignee.is_(None), S.c.created_by == user_id))
    query = (
        select(S)
        .where(S.c.ticket_ref == ticket_ref, S.c.status == "active", theirs)
        .order_by(S.c.create_time.desc())
        .limit(1)
    )
    return _maybe_session((await conn.execute(query)).first())


async def escalated_session_on(conn: AsyncConnection, *, ticket_ref: str) -> Session | None:
    """The newest active session an escalated walk opened on the ticket."""
    query = (
        select(S)
        .where(S.c.ticket_ref == ticket_ref, S.c.status == "active", S.c.escalated_walk_id.is_not(None))
        .order_by(S.c.create_time.desc())
        .limit(1)
    )
    return _maybe_session((await conn.execute(query)).first())


async def session_by_request_id(conn: AsyncConnection, request_id: uuid.UUID) -> Session | None:
    return _maybe_session((await conn.execute(select(S).where(S.c.request_id == request_id))).first())


# The tenant read functions this storage calls (created by sessions_0004 and
# sessions_0008; services.core.readpool).
READ_SESSION = TenantRead("sessions.read_session", ("uuid",))
LIST_FACTS = TenantRead(
    "sessions.list_facts", ("uuid", "boolean", "timestamp with time zone", "uuid", "integer")
)


async def read_session(db: Database, account_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
    """A session for reading only, in one round trip (tenant read function)."""
    rows = await db.read(READ_SESSION, account_id, session_id)
    return _session(rows[0]) if rows else None


async def get_session(conn: AsyncConnection, session_id: uuid.UUID, *, lock: bool = False) -> Session | None:
    query = select(S).where(S.c.id == session_id)
    if lock:
        query = query.with_for_update()
    return _maybe_session((await conn.execute(query)).first())


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
    assignee: uuid.UUID | None = None,
    unassigned: bool = False,
) -> list[Session]:
    """A page newest first; ``assignee`` or ``unassigned`` (the team queue)
    are read through ``ai_sessions_by_assignee``."""
    columns = list(S.c) if whole_lanes else _BASIC_COLUMNS
    query = select(*columns).order_by(S.c.create_time.desc(), S.c.id.desc()).limit(limit)
    if status:
        query = query.where(S.c.status == status)
    if ticket_ref:
        query = query.where(S.c.ticket_ref == ticket_ref)
    if assignee is not None:
        query = query.where(S.c.assignee == assignee)
    if unassigned:
        query = query.where(S.c.assignee.is_(None))
    if after:
        query = query.where(tuple_(S.c.create_time, S.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return [_session(row) for row in (await conn.execute(query)).all()]


async def _update_session(
    conn: AsyncConnection, session_id: uuid.UUID, values: dict[Any, Any], *, bump: bool = True
) -> Session:
    if bump:
        values[S.c.state_version] = S.c.state_version + 1
    values[S.c.update_time] = func.now()
    query = update(S).where(S.c.id == session_id).values(values).returning(S)
    return _session((await conn.execute(query)).one())


async def bump_state(conn: AsyncConnection, session_id: uuid.UUID) -> Session:
    """Counts a change of what the session's note would say (its state version)."""
    return await _update_session(conn, session_id, {})


async def update_session(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    *,
    title: str | None = None,
    problem: str | None = None,
    lane: list[LaneItem] | None = None,
) -> Session:
    """Changes the given fields (None: unchanged) and the state version."""
    values: dict[Any, Any] = {}
    if title is not None:
        values[S.c.title] = title
    if problem is not None:
        values[S.c.problem] = problem
    if lane is not None:
        values[S.c.pending_task_lane] = lane
    return await _update_session(conn, session_id, values)


async def end_session(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    *,
    status: str,
    end_time: datetime,
    closed_by: uuid.UUID,
    closed_by_name: str | None,
    resolution_summary: str | None = None,
    escalation_reason: str | None = None,
) -> Session:
    """Moves a session out of active (the given texts set, the others unchanged)."""
    values: dict[Any, Any] = {
        S.c.status: status,
        S.c.end_time: end_time,
        S.c.closed_by: closed_by,
        S.c.closed_by_name: closed_by_name,
    }
    if resolution_summary is not None:
        values[S.c.resolution_summary] = resolution_summary
    if escalation_reason is not None:
        values[S.c.escalation_reason] = escalation_reason
    return await _update_session(conn, session_id, values)


async def set_assignee(
    conn: AsyncConnection, session_id: uuid.UUID, *, assignee: uuid.UUID | None, name: str | None
) -> Session:
    """Changes who works the session (None: nobody, the team queue); the
    notes name them, so the state version moves."""
    return await _update_session(conn, session_id, {S.c.assignee: assignee, S.c.assignee_name: name})


async def abandon_stale(
    conn: AsyncConnection,
    *,
    idle_since: datetime,
    end_time: datetime,
    closed_by: uuid.UUID,
    closed_by_name: str,
    reason: str,
    limit: int,
) -> int:
    """Abandons up to ``limit`` of the account's active sessions unchanged
    since ``idle_since`` (their state version moves); returns how many.

    Rows another transaction holds are skipped (they are being changed, so
    not stale). The batch is picked once, in a materialized CTE: as a
    subquery (``id IN (… LIMIT n FOR UPDATE SKIP LOCKED)``) a nested-loop
    plan rescans it, each rescan skipping the rows the statement has just
    updated and locking the next ones, so a batch of 500 abandoned every
    stale session at once, in seconds (measured: 4,980 in 8.5 s)."""
    stale = (
        select(S.c.id)
        .where(S.c.status == "active", S.c.update_time < idle_since)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("stale")
        .prefix_with("MATERIALIZED")
    )
    result = await conn.execute(
        update(S)
        .where(S.c.id == stale.c.id, S.c.status == "active")
        .values(
            {
                S.c.status: "abandoned",
                S.c.end_time: end_time,
                S.c.closed_by: closed_by,
                S.c.closed_by_name: closed_by_name,
                S.c.abandon_reason: reason,
                S.c.state_version: S.c.state_version + 1,
                S.c.update_time: func.now(),
            }
        )
        .returning(S.c.id)
    )
    return len(result.all())


async def accounts_with_stale_sessions(
    conn: AsyncConnection, *, idle_since: datetime, limit: int = 10_000
) -> list[uuid.UUID]:
    """Every account with an active session unchanged since ``idle_since``,
    through ``sessions.accounts_with_stale_sessions`` (account ids only)."""
    rows = await conn.execute(
        text("SELECT * FROM sessions.accounts_with_stale_sessions(:since, :n)"),
        {"since": idle_since, "n": limit},
    )
    return list(rows.scalars().all())


async def record_posting(
    conn: AsyncConnection,
    session: Session,
    *,
    account_id: uuid.UUID,
    kind: NoteKind,
    text: str,
    fmt: str,
    external_id: str,
    state_version: int,
    posted_by: uuid.UUID,
    posted_by_name: str | None,
    prompt_version: int | None = None,
) -> Session:
    """Records a posted note or package as of ``state_version``: its next
    revision, and the session's latest posting (posting changes nothing the
    note says: the state version stays). The caller holds the session locked."""
    revision = (session.posting(kind).revision or 0) + 1
    posted = (
        await conn.execute(
            insert(R)
            .values(
                account_id=account_id,
                id=uuid.uuid4(),
                session_id=session.id,
                kind=kind.value,
                revision=revision,
                text=text,
                format=fmt,
                state_version=state_version,
                external_id=external_id,
                posted_by=posted_by,
                posted_by_name=posted_by_name,
                prompt_version=prompt_version,
            )
            .returning(R.c.post_time)
        )
    ).scalar_one()
    prefix = kind.value
    values: dict[Any, Any] = {
        S.c[f"{prefix}_markdown"]: text,
        S.c[f"{prefix}_post_time"]: posted,
        S.c[f"{prefix}_external_id"]: external_id,
        S.c[f"{prefix}_state_version"]: state_version,
        S.c[f"{prefix}_revision"]: revision,
        S.c[f"{prefix}_posted_by"]: posted_by,
        S.c[f"{prefix}_posted_by_name"]: posted_by_name,
    }
    return await _update_session(conn, session.id, values, bump=False)


def _revision(row: Row[Any]) -> NoteRevision:
    return NoteRevision(
        id=row.id,
        session_id=row.session_id,
        kind=NoteKind(row.kind),
        revision=row.revision,
        text=row.text,
        format=row.format,
        state_version=row.state_version,
        external_id=row.external_id,
        post_time=row.post_time,
        posted_by=row.posted_by,
        posted_by_name=row.posted_by_name,
        prompt_version=row.prompt_version,
    )


async def revision_by_external_id(
    conn: AsyncConnection, session_id: uuid.UUID, kind: NoteKind, external_id: str
) -> NoteRevision | None:
    query = select(R).where(
        R.c.session_id == session_id, R.c.kind == kind.value, R.c.external_id == external_id
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _revision(row)


async def list_note_revisions(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    *,
    kind: NoteKind | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[NoteRevision]:
    """A page of revisions, oldest first, after a (post_time, id) position."""
    query = select(R).where(R.c.session_id == session_id).order_by(R.c.post_time, R.c.id).limit(limit)
    if kind is not None:
        query = query.where(R.c.kind == kind.value)
    if after:
        query = query.where(tuple_(R.c.post_time, R.c.id) > tuple_(literal(after[0]), literal(after[1])))
    return [_revision(row) for row in (await conn.execute(query)).all()]


# --- facts ------------------------------------------------------------------


def _fact(row: _Row) -> Fact:
    return Fact(
        id=row.id,
        session_id=row.session_id,
        text=row.text,
        source=row.source,
        source_ref=row.source_ref,
        created_by=row.created_by,
        create_time=row.create_time,
        update_time=row.update_time,
        delete_time=row.delete_time,
    )


async def insert_fact(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    id: uuid.UUID,
    session_id: uuid.UUID,
    text: str,
    source: str,
    created_by: uuid.UUID,
    source_ref: str | None = None,
    create_time: datetime | None = None,
    update_time: datetime | None = None,
) -> Fact:
    """A new fact; its times are the database's now unless given."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "id": id,
        "session_id": session_id,
        "text": text,
        "source": source,
        "source_ref": source_ref,
        "created_by": created_by,
    }
    if create_time is not None:
        values["create_time"] = create_time
    if update_time is not None:
        values["update_time"] = update_time
    return _fact((await conn.execute(insert(F).values(**values).returning(F))).one())


async def get_fact(conn: AsyncConnection, session_id: uuid.UUID, fact_id: uuid.UUID) -> Fact | None:
    row = (await conn.execute(select(F).where(F.c.session_id == session_id, F.c.id == fact_id))).first()
    return None if row is None else _fact(row)


async def list_facts(
    db: Database,
    account_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    show_deleted: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Fact] | None:
    """A page of facts in (create_time, id) order after a keyset position, in
    one round trip (tenant read function); None when the session is not there."""
    after_time, after_id = after if after is not None else (None, None)
    try:
        rows = await db.read(LIST_FACTS, account_id, session_id, show_deleted, after_time, after_id, limit)
    except asyncpg.NoDataFoundError:
        return None
    return [_fact(row) for row in rows]


async def active_facts(conn: AsyncConnection, session_id: uuid.UUID, *, limit: int = 500) -> list[Fact]:
    """The newest ``limit`` facts not deleted, oldest first."""
    query = (
        select(F)
        .where(F.c.session_id == session_id, F.c.delete_time.is_(None))
        .order_by(F.c.create_time.desc(), F.c.id.desc())
        .limit(limit)
    )
    return [_fact(row) for row in reversed((await conn.execute(query)).all())]


async def _update_fact(conn: AsyncConnection, fact_id: uuid.UUID, values: dict[Any, Any]) -> Fact:
    values[F.c.update_time] = func.now()
    return _fact((await conn.execute(update(F).where(F.c.id == fact_id).values(values).returning(F))).one())


async def edit_fact(
    conn: AsyncConnection,
    fact_id: uuid.UUID,
    *,
    text: str | None = None,
    change_source_ref: bool = False,
    source_ref: str | None = None,
) -> Fact:
    """Changes a fact's text (None: unchanged) and, with ``change_source_ref``, its reference."""
    values: dict[Any, Any] = {}
    if text is not None:
        values[F.c.text] = text
    if change_source_ref:
        values[F.c.source_ref] = source_ref
    return await _update_fact(conn, fact_id, values)


async def set_fact_deleted(conn: AsyncConnection, fact_id: uuid.UUID, delete_time: datetime | None) -> Fact:
    return await _update_fact(conn, fact_id, {F.c.delete_time: delete_time})


# --- fixes ------------------------------------------------------------------


def _fix(row: Row[Any]) -> Fix:
    return Fix(
        id=row.id,
        session_id=row.session_id,
        title=row.title,
        summary_markdown=row.summary_markdown,
        steps=row.steps,
        confidence=row.confidence,
        rationale=row.rationale,
        model=row.model,
        state_version=row.state_version,
        status=row.status,
        supersede_time=row.supersede_time,
        create_time=row.create_time,
        decide_time=row.decide_time,
        decided_by=row.decided_by,
        decided_by_name=row.decided_by_name,
        reject_reason=row.reject_reason,
    )


def _maybe_fix(row: Row[Any] | None) -> Fix | None:
    return None if row is None else _fix(row)


async def supersede_active_fix(conn: AsyncConnection, session_id: uuid.UUID) -> None:
    await conn.execute(
        update(X)
        .where(X.c.session_id == session_id, X.c.supersede_time.is_(None))
        .values(supersede_time=func.now())
    )


async def insert_fix(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    id: uuid.UUID,
    session_id: uuid.UUID,
    title: str,
    summary_markdown: str,
    steps: list[str],
    confidence: float,
    rationale: str,
    model: str,
    state_version: int,
) -> Fix:
    query = (
        insert(X)
        .values(
            account_id=account_id,
            id=id,
            session_id=session_id,
            title=title,
            summary_markdown=summary_markdown,
            steps=steps,
            confidence=confidence,
            rationale=rationale,
            model=model,
            state_version=state_version,
        )
        .returning(X)
    )
    return _fix((await conn.execute(query)).one())


async def get_fix(conn: AsyncConnection, session_id: uuid.UUID, fix_id: uuid.UUID) -> Fix | None:
    return _maybe_fix(
        (await conn.execute(select(X).where(X.c.session_id == session_id, X.c.id == fix_id))).first()
    )


async def active_fix(conn: AsyncConnection, session_id: uuid.UUID) -> Fix | None:
    query = select(X).where(X.c.session_id == session_id, X.c.supersede_time.is_(None))
    return _maybe_fix((await conn.execute(query)).first())


async def list_fixes(
    conn: AsyncConnection, session_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Fix]:
    query = (
        select(X)
        .where(X.c.session_id == session_id)
        .order_by(X.c.create_time.desc(), X.c.id.desc())
        .limit(limit)
    )
    if after:
        query = query.where(tuple_(X.c.create_time, X.c.id) < tuple_(literal(after[0]), literal(after[1])))
    return [_fix(row) for row in (await conn.execute(query)).all()]


async def session_fixes(conn: AsyncConnection, session_id: uuid.UUID, *, limit: int = 100) -> list[Fix]:
    """The session's newest ``limit`` fixes, oldest first (its history for the notes)."""
    query = (
        select(X)
        .where(X.c.session_id == session_id)
        .order_by(X.c.create_time.desc(), X.c.id.desc())
        .limit(limit)
    )
    return [_fix(row) for row in reversed((await conn.execute(query)).all())]


async def decide_fix(
    conn: AsyncConnection,
    fix_id: uuid.UUID,
    status: str,
    *,
    decided_by: uuid.UUID,
    decided_by_name: str | None,
    reject_reason: str | None = None,
) -> Fix | None:
    """Accepts or rejects a fix that is active and undecided; None otherwise."""
    query = (
        update(X)
        .where(and_(X.c.id == fix_id, X.c.supersede_time.is_(None), X.c.status == "proposed"))
        .values(
            status=status,
            decide_time=func.now(),
            decided_by=decided_by,
            decided_by_name=decided_by_name,
            reject_reason=reject_reason,
        )
        .returning(X)
    )
    return _maybe_fix((await conn.execute(query)).first())


# --- note previews ------------------------------------------------------------


def _preview(row: Row[Any]) -> Preview:
    return Preview(
        text=row.text,
        format=row.format,
        state_version=row.state_version,
        model=row.model,
        prompt_version=row.prompt_version,
    )


async def get_preview(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    *,
    kind: NoteKind,
    state_version: int,
    fmt: str,
    time_zone: str,
    prompt_version: int,
) -> Preview | None:
    query = select(P).where(
        P.c.session_id == session_id,
        P.c.kind == kind.value,
        P.c.state_version == state_version,
        P.c.format == fmt,
        P.c.time_zone == time_zone,
        P.c.prompt_version == prompt_version,
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _preview(row)


async def put_preview(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    session_id: uuid.UUID,
    kind: NoteKind,
    state_version: int,
    fmt: str,
    time_zone: str,
    text: str,
    model: str,
    prompt_version: int,
) -> Preview:
    """Stores a preview; when another replica stored it first, returns theirs."""
    stmt = (
        insert(P)
        .values(
            account_id=account_id,
            session_id=session_id,
            kind=kind.value,
            state_version=state_version,
            format=fmt,
            time_zone=time_zone,
            text=text,
            model=model,
            prompt_version=prompt_version,
        )
        .on_conflict_do_nothing()
        .returning(P)
    )
    row = (await conn.execute(stmt)).first()
    if row is not None:
        return _preview(row)
    existing = await get_preview(
        conn,
        session_id,
        kind=kind,
        state_version=state_version,
        fmt=fmt,
        time_zone=time_zone,
        prompt_version=prompt_version,
    )
    assert existing is not None
    return existing
