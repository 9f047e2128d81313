"""Resolution notes and escalation packages: the state-versioned preview cache
and posting.

A preview is generated at most once per (session, kind, state version,
format) and stored in ``sessions.note_previews``, so it survives restarts and
is shared by replicas: an unchanged session is served from the table, any
write that bumps ``state_version`` makes the next preview new. Posting
records the preview of the current state with the PSA's ``external_id``;
repeating it with the same id is a no-op, another id is refused. The model is
never called inside a transaction.
"""

from __future__ import annotations

import uuid

from services.core.ai import AI, LaneView, Preferences, SessionContext
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition
from services.sessions import lifecycle, storage
from services.sessions.rows import LaneItem, NoteKind, Preview, Session
from services.sessions.storage import Connection

__all__ = ["NoteKind", "Notes", "context"]


def lane_view(item: LaneItem) -> LaneView:
    return LaneView(
        kind=item["kind"],
        title=item["title"],
        status=item["status"],
        detail=item.get("detail", ""),
        output=item.get("output", ""),
        script_body=item.get("script_body", ""),
        script_language=item.get("script_language", ""),
    )


async def context(conn: Connection, row: Session) -> SessionContext:
    """What the model may know of the session ``row``."""
    facts = await storage.active_fact_texts(conn, row.id)
    fix = await storage.active_fix(conn, row.id)
    return SessionContext(
        ticket_ref=row.ticket_ref,
        title=row.title,
        problem=row.problem,
        status=row.status,
        facts=tuple(facts),
        lane=tuple(lane_view(item) for item in row.pending_task_lane),
        fix_title=fix.title if fix else "",
        fix_steps=tuple(fix.steps) if fix else (),
        fix_status=fix.status if fix else "",
        resolution_summary=row.resolution_summary or "",
        escalation_reason=row.escalation_reason or "",
    )


def already_posted(row: Session, kind: NoteKind, external_id: str) -> bool:
    """Whether ``kind`` was posted: True when as ``external_id`` (a retry,
    nothing changes); refused when as another id."""
    posted_id = row.posting(kind).external_id
    if posted_id is None:
        return False
    if posted_id == external_id:
        return True
    raise FailedPrecondition(
        f"the {kind.value.replace('_', ' ')} was already posted as {posted_id!r}",
        reason="ALREADY_POSTED",
        metadata={"external_id": posted_id},
    )


class Notes:
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings

    async def _generate(self, kind: NoteKind, ctx: SessionContext, prefs: Preferences) -> tuple[str, str]:
        if kind is NoteKind.RESOLUTION_NOTE:
            doc = await self._ai.write_resolution_note(ctx, prefs)
        else:
            doc = await self._ai.write_escalation_package(ctx, prefs)
        return doc.text, doc.model

    async def _load(
        self, account: uuid.UUID, session_id: uuid.UUID, kind: NoteKind, fmt: str
    ) -> tuple[Session, Preview | None, SessionContext | None]:
        """(session row, cached preview or None, context when not cached)."""
        async with self._db.transaction(account) as conn:
            row = await lifecycle.find(conn, session_id)
            cached = await storage.get_preview(
                conn, session_id, kind=kind, state_version=row.state_version, fmt=fmt
            )
            ctx = None if cached is not None else await context(conn, row)
        return row, cached, ctx

    async def preview(
        self, account: uuid.UUID, session_id: uuid.UUID, kind: NoteKind
    ) -> tuple[Preview, bool]:
        """The note of the session's current state, and whether it was cached."""
        prefs = await self._settings.preferences()
        row, cached, ctx = await self._load(account, session_id, kind, prefs.fmt)
        if cached is not None:
            return cached, True
        assert ctx is not None
        text, model = await self._generate(kind, ctx, prefs)
        async with self._db.transaction(account) as conn:
            stored = await storage.put_preview(
                conn,
                account_id=current_principal().account_id,
                session_id=session_id,
                kind=kind,
                state_version=row.state_version,
                fmt=prefs.fmt,
                text=text,
                model=model,
            )
        return stored, False

    async def post(
        self,
        account: uuid.UUID,
        session_id: uuid.UUID,
        kind: NoteKind,
        external_id: str,
        *,
        attempts: int = 3,
    ) -> Session:
        for _ in range(attempts):
            async with self._db.transaction(account) as conn:
                row = await lifecycle.find(conn, session_id)
            if already_posted(row, kind, external_id):
                return row
            preview, _ = await self.preview(account, session_id, kind)
            async with self._db.transaction(account) as conn:
                row = await lifecycle.find(conn, session_id, lock=True)
                if already_posted(row, kind, external_id):
                    return row
                if row.state_version != preview.state_version:
                    continue  # changed while the note was written: write it again
                return await storage.record_posting(
                    conn,
                    session_id,
                    kind=kind,
                    markdown=preview.text,
                    external_id=external_id,
                    state_version=preview.state_version,
                )
        raise Aborted(
            "the session kept changing while the note was written; retry", reason="CONCURRENT_CHANGE"
        )
