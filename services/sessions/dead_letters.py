"""Dead letters: outbox rows whose delivery gave up, listed and retried by
team admins. A retry makes the row due now with its attempts counted afresh."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from services.core.db import Database
from services.core.errors import found
from services.sessions import outbox_storage
from services.sessions.rows import DeadLetter


class DeadLetters:
    def __init__(self, db: Database, *, kick: Callable[[], None] | None = None) -> None:
        self._db = db
        self._kick = kick  # to deliver a retried letter soon

    async def page(
        self, account: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[DeadLetter]:
        async with self._db.transaction(account) as conn:
            return await outbox_storage.list_dead_letters(conn, after=after, limit=limit)

    async def retry(self, account: uuid.UUID, letter_id: uuid.UUID, name: str) -> DeadLetter:
        """The letter as it was (still dead): it is due again now."""
        async with self._db.transaction(account) as conn:
            row = await outbox_storage.retry_dead_letter(conn, letter_id)
        row = found(row, "dead letter", name)
        if self._kick is not None:
            self._kick()
        return row
