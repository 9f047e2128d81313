"""Suggested fixes: AI-proposed resolutions of a session, with their history.

At most one fix per session is active (a partial UNIQUE index where
``supersede_time IS NULL``): a new proposal supersedes the old one in the same
transaction. Only the active fix, while still proposed, is accepted or
rejected. The model is never called inside a transaction: the context is read,
the model called, then the fix written in a second transaction that checks
the session again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core.ai import AI
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import FailedPrecondition, found
from services.sessions import lifecycle, notes, storage
from services.sessions.rows import Fix

DECISIONS = frozenset({"accepted", "rejected"})


def not_open(fix: Fix) -> FailedPrecondition:
    """Why ``fix`` cannot be decided: it is superseded or decided already."""
    state = "superseded" if fix.supersede_time is not None else fix.status
    return FailedPrecondition(
        f"fix is {state}; only the active proposed fix can be decided", reason="FIX_NOT_OPEN"
    )


class Fixes:
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings

    async def suggest(self, principal: Principal, session_id: uuid.UUID) -> Fix:
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id)
            lifecycle.require_writable(row, principal)
            ctx = await notes.context(conn, row)
        prefs = await self._settings.preferences()
        suggestion = await self._ai.suggest_fix(ctx, prefs)
        async with self._db.transaction(principal.account_id) as conn:
            await lifecycle.find_writable(conn, session_id, principal)
            await storage.supersede_active_fix(conn, session_id)
            fix = await storage.insert_fix(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                session_id=session_id,
                title=suggestion.title,
                summary_markdown=suggestion.summary_markdown,
                steps=suggestion.steps,
                confidence=suggestion.confidence,
                rationale=suggestion.rationale,
                model=suggestion.model,
                # The state the proposal was made from.
                state_version=row.state_version,
            )
            await storage.bump_state(conn, session_id)
        return fix

    async def active(self, account: uuid.UUID, session_id: uuid.UUID, name: str) -> Fix:
        async with self._db.transaction(account) as conn:
            await lifecycle.find(conn, session_id)
            fix = await storage.active_fix(conn, session_id)
        return found(fix, "active fix", name)

    async def page(
        self,
        account: uuid.UUID,
        session_id: uuid.UUID,
        *,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Fix]:
        async with self._db.transaction(account) as conn:
            await lifecycle.find(conn, session_id)
            return await storage.list_fixes(conn, session_id, after=after, limit=limit)

    async def decide(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        fix_id: uuid.UUID,
        name: str,
        status: str,
        *,
        reason: str | None = None,
    ) -> Fix:
        """Accepts or rejects (``status``, with ``reason`` when rejected) the
        fix named ``name``, recording who decided."""
        assert status in DECISIONS, status
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id, lock=True)
            fix = found(await storage.get_fix(conn, session_id, fix_id), "fix", name)
            lifecycle.require_writable(row, principal)
            decided = await storage.decide_fix(
                conn,
                fix_id,
                status,
                decided_by=principal.user_id,
                decided_by_name=principal.display_name or None,
                reject_reason=reason if status == "rejected" else None,
            )
            if decided is None:
                raise not_open(fix)
            await storage.bump_state(conn, session_id)
        return decided
