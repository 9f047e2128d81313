"""A session's life: created for a ticket (or the user's active session on it
resumed, or the one an L1 escalation opened handed over), its title and
problem changed under its etag, who works it (claimed, assigned: the rules
are :mod:`services.sessions.handoff`'s), and its one move out of ``active``:
resolved, escalated or abandoned, by a person or by the stale-session sweep.

Every change locks the session row first (``SELECT … FOR UPDATE``), checks
that the caller may change it (:func:`handoff.require_worker`) and that it is
active, and bumps ``state_version`` in the same transaction. A resolve also
queues the session's working scripts for the library
(:mod:`services.sessions.drafts`) in that transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.core import requests
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, found
from services.sessions import handoff, storage
from services.sessions.drafts import queue as queue_drafts
from services.sessions.handoff import Assignment
from services.sessions.rows import Session
from services.sessions.storage import Connection

ACTIVE = "active"
# The states a session ends in; none of them moves again.
ENDS = frozenset({"resolved", "escalated", "abandoned"})


# --- rules ---------------------------------------------------------------------


def not_active(session: Session) -> FailedPrecondition:
    return FailedPrecondition(
        f"session is {session.status}; only active sessions can change",
        reason="SESSION_NOT_ACTIVE",
        metadata={"status": session.status},
    )


def require_active(session: Session) -> None:
    """Only an active session changes (its facts, fixes, lane, title, problem)."""
    if session.status != ACTIVE:
        raise not_active(session)


def check_etag(session: Session, expected: int | None) -> None:
    """A write with an etag applies only to the state it was read at."""
    if expected is not None and expected != session.state_version:
        raise Aborted(
            f"session changed (state version {session.state_version}, etag {expected}); read it again",
            reason="ETAG_MISMATCH",
        )


def check_transition(session: Session, status: str) -> None:
    """An active session moves to one of :data:`ENDS`, once."""
    assert status in ENDS, status
    if session.status != ACTIVE:
        raise FailedPrecondition(
            f"cannot move a {session.status} session to {status}",
            reason="INVALID_TRANSITION",
            metadata={"status": session.status},
        )


def check_first_facts(facts: Sequence[tuple[str, str]]) -> None:
    """A new session's facts (text, source) cannot come from its task lane: it has none yet."""
    if any(source == "task_lane" for _, source in facts):
        raise InvalidArgument(FieldViolation("facts", "a new session has no task lane to refer to"))


def fact_times(now: datetime, count: int) -> list[datetime]:
    """Create times for a new session's facts: facts list by create time, so
    each is a microsecond after the one before, in the request's order."""
    return [now + timedelta(microseconds=order) for order in range(count)]


# --- reading -------------------------------------------------------------------


async def find(conn: Connection, session_id: uuid.UUID, *, lock: bool = False) -> Session:
    """The session (locked for this transaction with ``lock``), or NOT_FOUND."""
    return found(await storage.get_session(conn, session_id, lock=lock), "session", f"sessions/{session_id}")


async def find_active(conn: Connection, session_id: uuid.UUID) -> Session:
    """The session locked for a change: NOT_FOUND, or FAILED_PRECONDITION unless active."""
    row = await find(conn, session_id, lock=True)
    require_active(row)
    return row


def require_writable(session: Session, principal: Principal) -> None:
    """A change needs someone who works the session (PERMISSION_DENIED) and
    an active session (FAILED_PRECONDITION), in that order."""
    handoff.require_worker(session, principal)
    require_active(session)


async def find_writable(conn: Connection, session_id: uuid.UUID, principal: Principal) -> Session:
    """The session locked for ``principal``'s change: NOT_FOUND,
    PERMISSION_DENIED unless they work it, FAILED_PRECONDITION unless active."""
    row = await find(conn, session_id, lock=True)
    require_writable(row, principal)
    return row


@dataclass(frozen=True, slots=True)
class NewSession:
    ticket_ref: str
    ticket_kind: str
    title: str
    problem: str
    # The facts it starts with: (text, source), in order.
    facts: Sequence[tuple[str, str]]
    force_new: bool = False
    request_id: uuid.UUID | None = None
    # Who sent the request and what it asked (services.core.requests).
    fingerprint: str = ""
    # The L1 walk escalating into it (walks service id, recorded as given).
    escalated_walk: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """What an update changes of a session (None: unchanged), and the etag it
    was read at (None: whatever the state)."""

    title: str | None = None
    problem: str | None = None
    etag: int | None = None


@dataclass(frozen=True, slots=True)
class Created:
    session: Session
    # A retry of an earlier request (same request id): nothing new was made.
    replayed: bool = False
    # The user's active session on the ticket, returned instead of a new one.
    resumed: bool = False
    # ... and it is the one an L1 escalation opened (resumed too).
    handed_over: bool = False


class Lifecycle:
    def __init__(
        self,
        db: Database,
        settings: SettingsReader,
        *,
        clock: Callable[[], datetime],
        kick: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._kick = kick  # to deliver queued drafts soon

    async def create(self, principal: Principal, new: NewSession) -> Created:
        async with self._db.transaction(principal.account_id) as conn:
            # Serialise creation per (user, ticket); a retry's request id is
            # checked under the same lock, so concurrent retries create one.
            await storage.lock_ticket(conn, user_id=principal.user_id, ticket_ref=new.ticket_ref)
            if new.request_id is not None:
                earlier = await storage.session_by_request_id(conn, new.request_id)
                if earlier is not None:
                    requests.check_replay(earlier.request_fingerprint, new.fingerprint)
                    return Created(earlier, replayed=True)
            if not (new.force_new or new.escalated_walk):
                waiting = await self._waiting(conn, principal, new.ticket_ref)
                if waiting is not None:
                    return waiting
            creator = handoff.person(principal)
            assignee = handoff.first_assignee(creator, escalated=new.escalated_walk is not None)
            row = await storage.insert_session(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                ticket_ref=new.ticket_ref,
                ticket_kind=new.ticket_kind,
                title=new.title,
                problem=new.problem,
                created_by=principal.user_id,
                request_id=new.request_id,
                request_fingerprint=new.fingerprint if new.request_id is not None else None,
                created_by_name=creator.name,
                assignee=assignee.id if assignee else None,
                assignee_name=assignee.name if assignee else None,
                escalated_walk_id=new.escalated_walk,
            )
            now = self._clock()
            for (text, source), create_time in zip(new.facts, fact_times(now, len(new.facts)), strict=True):
                await storage.insert_fact(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    session_id=row.id,
                    text=text,
                    source=source,
                    created_by=principal.user_id,
                    create_time=create_time,
                    update_time=now,
                )
        return Created(row)

    @staticmethod
    async def _waiting(conn: Connection, principal: Principal, ticket_ref: str) -> Created | None:
        """What opening the ticket returns instead of a new session: the
        caller's own active session on it, else the one an L1 escalation
        opened there (handed over, whoever it is assigned to)."""
        own = await storage.active_session_for(conn, user_id=principal.user_id, ticket_ref=ticket_ref)
        if own is not None:
            return Created(own, resumed=True)
        escalated = await storage.escalated_session_on(conn, ticket_ref=ticket_ref)
        if escalated is not None:
            return Created(escalated, resumed=True, handed_over=True)
        return None

    async def get(self, account: uuid.UUID, session_id: uuid.UUID) -> Session:
        return found(
            await storage.read_session(self._db, account, session_id), "session", f"sessions/{session_id}"
        )

    async def page(
        self,
        account: uuid.UUID,
        *,
        status: str | None,
        ticket_ref: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        whole_lanes: bool,
        assignee: uuid.UUID | None = None,
        unassigned: bool = False,
    ) -> list[Session]:
        async with self._db.transaction(account) as conn:
            return await storage.list_sessions(
                conn,
                status=status,
                ticket_ref=ticket_ref,
                after=after,
                limit=limit,
                whole_lanes=whole_lanes,
                assignee=assignee,
                unassigned=unassigned,
            )

    async def update(self, principal: Principal, session_id: uuid.UUID, edit: Edit) -> Session:
        async with self._db.transaction(principal.account_id) as conn:
            row = await find_writable(conn, session_id, principal)
            check_etag(row, edit.etag)
            return await storage.update_session(conn, session_id, title=edit.title, problem=edit.problem)

    async def claim(self, principal: Principal, session_id: uuid.UUID, etag: int | None) -> Session:
        """The session, taken by ``principal`` (:func:`handoff.claimed`)."""
        async with self._db.transaction(principal.account_id) as conn:
            row = await find_active(conn, session_id)
            check_etag(row, etag)
            after = handoff.claimed(row, principal)
            if after is None:
                return row
            return await storage.set_assignee(conn, session_id, assignee=after.id, name=after.name)

    async def assign(
        self, principal: Principal, session_id: uuid.UUID, assignment: Assignment, etag: int | None
    ) -> Session:
        """The session, assigned as a team admin asked (:func:`handoff.assigned`)."""
        async with self._db.transaction(principal.account_id) as conn:
            row = await find_active(conn, session_id)
            check_etag(row, etag)
            changes, after = handoff.assigned(row, principal, assignment)
            if not changes:
                return row
            return await storage.set_assignee(
                conn, session_id, assignee=after.id if after else None, name=after.name if after else None
            )

    async def drafts_scripts(self) -> bool:
        """Whether a resolve sends the session's working scripts to the library
        (the account's ``library.auto_draft_scripts``, on by default)."""
        return await self._settings.flag("library.auto_draft_scripts")

    async def resolve(
        self, principal: Principal, session_id: uuid.UUID, summary: str, *, draft_scripts: bool
    ) -> Session:
        """Resolves the session; with ``draft_scripts``, its working scripts go to the library."""
        return await self._end(
            principal,
            session_id,
            "resolved",
            draft_scripts=draft_scripts,
            resolution_summary=summary,
        )

    async def escalate(self, principal: Principal, session_id: uuid.UUID, reason: str) -> Session:
        return await self._end(principal, session_id, "escalated", escalation_reason=reason)

    async def abandon(self, principal: Principal, session_id: uuid.UUID) -> Session:
        return await self._end(principal, session_id, "abandoned")

    async def _end(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        status: str,
        *,
        draft_scripts: bool = False,
        resolution_summary: str | None = None,
        escalation_reason: str | None = None,
    ) -> Session:
        """Moves the session to ``status``, ``principal`` recorded as its
        closer; with ``draft_scripts``, queues its scripts as drafts by them
        in the same transaction."""
        queued = False
        closer = handoff.person(principal)
        async with self._db.transaction(principal.account_id) as conn:
            row = await find(conn, session_id, lock=True)
            handoff.require_worker(row, principal)
            check_transition(row, status)
            row = await storage.end_session(
                conn,
                session_id,
                status=status,
                end_time=self._clock(),
                closed_by=closer.id,
                closed_by_name=closer.name,
                resolution_summary=resolution_summary,
                escalation_reason=escalation_reason,
            )
            if draft_scripts:
                queued = await queue_drafts(conn, row, principal)
        if queued and self._kick is not None:
            self._kick()
        return row
