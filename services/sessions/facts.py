"""What is known in a session: facts, from the user, the AI or the task lane.

A fact from the task lane points at an item of its session's lane
(``source_ref``); the lane lives in JSONB, so no foreign key can check it and
these rules do. Facts are soft-deleted (``delete_time``) and undeleted. Every
change bumps the session's state version, under the session's row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.core import ids
from services.core.auth import Principal
from services.core.db import Database
from services.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, found
from services.sessions import lifecycle, storage
from services.sessions.resources import FACT, child_ids
from services.sessions.rows import Fact, Session
from services.sessions.storage import Connection

TASK_LANE = "task_lane"


# --- rules ---------------------------------------------------------------------


def require_ref(source: str, ref: str | None, field: str) -> None:
    """A fact from the task lane says which item it came from."""
    if source == TASK_LANE and ref is None:
        raise InvalidArgument(FieldViolation(field, "is required for facts from the task lane"))


def check_ref(session: Session, item_id: str | None, field: str) -> None:
    """A reference names an item of the session's own lane."""
    if item_id is not None and not any(i["id"] == item_id for i in session.pending_task_lane):
        raise InvalidArgument(FieldViolation(field, "is not an item of this session's task lane"))


def require_not_deleted(fact: Fact) -> None:
    if fact.delete_time is not None:
        raise FailedPrecondition("fact is deleted; undelete it first", reason="FACT_DELETED")


def needs_change(fact: Fact, *, deleted: bool) -> bool:
    """Whether deleting (or undeleting) ``fact`` changes it: deleting twice
    changes nothing; undeleting a fact that is not deleted is refused."""
    if (fact.delete_time is not None) != deleted:
        return True
    if deleted:
        return False
    raise FailedPrecondition("fact is not deleted", reason="FACT_NOT_DELETED")


# --- facts ---------------------------------------------------------------------


async def find(conn: Connection, name: str, field: str = "name") -> Fact:
    """The fact named ``name``, or NOT_FOUND."""
    session_id, fact_text_id = child_ids(name, FACT, "fact", field=field)
    fact_id = ids.parse_uuid(fact_text_id, field=field, what="fact id")
    return found(await storage.get_fact(conn, session_id, fact_id), "fact", name)


@dataclass(frozen=True, slots=True)
class NewFact:
    text: str
    source: str
    source_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """What an update changes of a fact (None: unchanged)."""

    text: str | None = None
    change_source_ref: bool = False
    source_ref: str | None = None


class Facts:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def create(self, principal: Principal, session_id: uuid.UUID, new: NewFact) -> Fact:
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find_writable(conn, session_id, principal)
            check_ref(row, new.source_ref, "fact.source_ref")
            fact = await storage.insert_fact(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                session_id=session_id,
                text=new.text,
                source=new.source,
                source_ref=new.source_ref,
                created_by=principal.user_id,
            )
            await storage.bump_state(conn, session_id)
        return fact

    async def get(self, account: uuid.UUID, name: str) -> Fact:
        async with self._db.transaction(account) as conn:
            return await find(conn, name)

    async def page(
        self,
        account: uuid.UUID,
        session_id: uuid.UUID,
        *,
        show_deleted: bool,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Fact]:
        rows = await storage.list_facts(
            self._db, account, session_id, show_deleted=show_deleted, after=after, limit=limit
        )
        return found(rows, "session", f"sessions/{session_id}")

    async def update(self, principal: Principal, session_id: uuid.UUID, name: str, edit: Edit) -> Fact:
        field = "fact.source_ref"
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id, lock=True)
            fact = await find(conn, name, field="fact.name")
            lifecycle.require_writable(row, principal)
            require_not_deleted(fact)
            if edit.change_source_ref:
                require_ref(fact.source, edit.source_ref, field)
            check_ref(row, edit.source_ref, field)
            fact = await storage.edit_fact(
                conn,
                fact.id,
                text=edit.text,
                change_source_ref=edit.change_source_ref,
                source_ref=edit.source_ref,
            )
            await storage.bump_state(conn, session_id)
        return fact

    async def set_deleted(self, principal: Principal, name: str, *, deleted: bool) -> Fact:
        session_id, _ = child_ids(name, FACT, "fact")
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id, lock=True)
            fact = await find(conn, name)
            lifecycle.require_writable(row, principal)
            if not needs_change(fact, deleted=deleted):
                return fact
            fact = await storage.set_fact_deleted(conn, fact.id, self._clock() if deleted else None)
            await storage.bump_state(conn, session_id)
        return fact
