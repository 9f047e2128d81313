"""SQL of the sessions outbox: recording work for another service in the
transaction of the change that causes it, claiming and recording deliveries,
and dead letters.

As in :mod:`services.sessions.storage`, functions take the caller's
connection and never commit, and rows leave typed. The two reads across
accounts go through narrow SECURITY DEFINER functions (``sessions.outbox_stats``,
``sessions.outbox_accounts_due``) on a connection of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, and_, func, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.sessions.rows import DeadLetter, OutboxMessage
from services.sessions.tables import outbox


async def insert_outbox(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    id: uuid.UUID,
    topic: str,
    dedupe_key: str,
    payload: dict[str, Any],
    trace: dict[str, str],
) -> None:
    """Records work for another service; a repeat (same topic and key) is ignored."""
    await conn.execute(
        insert(outbox)
        .values(
            account_id=account_id, id=id, topic=topic, dedupe_key=dedupe_key, payload=payload, trace=trace
        )
        .on_conflict_do_nothing()
    )


_DEAD = and_(outbox.c.dead_time.is_not(None), outbox.c.deliver_time.is_(None))
# A dead letter's columns: the payload stays in the database, its session comes along.
_LETTER: list[Any] = [c for c in outbox.c if c.name != "payload"] + [
    outbox.c.payload["session"].astext.label("session")
]


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        topic=row.topic,
        session=row.session,
        attempts=row.attempts,
        last_error=row.last_error,
        create_time=row.create_time,
        dead_time=row.dead_time,
    )


async def list_dead_letters(
    conn: AsyncConnection, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[DeadLetter]:
    """Dead letters, newest first; the payload stays in the database."""
    query = select(*_LETTER).where(_DEAD).order_by(outbox.c.dead_time.desc(), outbox.c.id.desc()).limit(limit)
    if after:
        query = query.where(
            tuple_(outbox.c.dead_time, outbox.c.id) < tuple_(literal(after[0]), literal(after[1]))
        )
    return [_dead_letter(row) for row in (await conn.execute(query)).all()]


async def retry_dead_letter(conn: AsyncConnection, letter_id: uuid.UUID) -> DeadLetter | None:
    """Makes a dead letter due now with its attempts counted afresh; None when
    there is no such dead letter. Returns the row as it was (still dead)."""
    before = (
        await conn.execute(select(*_LETTER).where(outbox.c.id == letter_id, _DEAD).with_for_update())
    ).first()
    if before is not None:
        await conn.execute(
            update(outbox)
            .where(outbox.c.id == letter_id)
            .values(dead_time=None, attempts=0, next_attempt_time=func.now())
        )
    return None if before is None else _dead_letter(before)


async def outbox_stats(engine: AsyncEngine) -> tuple[int, float, int]:
    """(rows pending, age of the oldest in seconds, dead letters) over every
    account, through ``sessions.outbox_stats`` (aggregates only)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT pending, extract(epoch FROM now() - oldest_pending) AS age, dead "
                    "FROM sessions.outbox_stats()"
                )
            )
        ).one()
    return int(row.pending), max(float(row.age or 0), 0.0), int(row.dead)


async def outbox_accounts_due(engine: AsyncEngine) -> Sequence[uuid.UUID]:
    """Accounts with due outbox rows, through ``sessions.outbox_accounts_due``
    (SECURITY DEFINER: the service's own login cannot see across tenants)."""
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT * FROM sessions.outbox_accounts_due(100)"))).scalars().all()


async def claim_outbox(conn: AsyncConnection, *, batch: int, lease: timedelta) -> list[OutboxMessage]:
    """Claims up to ``batch`` due rows, skipping rows another worker holds:
    they are due again only after ``lease``. Oldest first.

    The due rows are picked once, in a materialized CTE: as ``id IN (…
    LIMIT n FOR UPDATE SKIP LOCKED)`` PostgreSQL may run the subquery again
    while it updates, and each run finds the next rows still due, so one
    claim could take every due row instead of ``batch``."""
    due = (
        select(outbox.c.id)
        .where(outbox.c.deliver_time.is_(None), outbox.c.next_attempt_time <= func.now())
        .order_by(outbox.c.create_time)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    rows = (
        await conn.execute(
            update(outbox)
            .where(outbox.c.id == due.c.id)
            .values(next_attempt_time=func.now() + lease)
            .returning(outbox)
        )
    ).all()
    messages = [
        OutboxMessage(
            id=row.id,
            topic=row.topic,
            payload=row.payload,
            trace=row.trace,
            attempts=row.attempts,
            next_attempt_time=row.next_attempt_time,
            create_time=row.create_time,
        )
        for row in rows
    ]
    return sorted(messages, key=lambda m: m.create_time)


async def record_delivery(
    conn: AsyncConnection,
    message: OutboxMessage,
    *,
    outcome: Literal["delivered", "dead", "retry"],
    last_error: str | None,
    retry_after: timedelta = timedelta(0),
) -> None:
    """Records one delivery attempt, only while the claim on ``message`` holds:
    after its lease another worker owns the row, and its outcome is the one
    recorded."""
    values: dict[str, Any] = {"attempts": message.attempts + 1, "last_error": last_error}
    if outcome == "delivered":
        values["deliver_time"] = func.now()
    elif outcome == "dead":
        values["dead_time"] = func.now()
        values["next_attempt_time"] = text("'infinity'::timestamptz")
    else:
        values["next_attempt_time"] = func.now() + retry_after
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.id == message.id,
            outbox.c.next_attempt_time == message.next_attempt_time,
            outbox.c.deliver_time.is_(None),
        )
        .values(**values)
    )
