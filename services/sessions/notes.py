"""Resolution notes and escalation packages: the state-versioned preview cache
and posting.

A preview is generated at most once per (session, kind, state version,
format) and stored in ``sessions.note_previews``, so it survives restarts and
is shared by replicas: an unchanged session is served from the table, any
write that bumps ``state_version`` makes the next preview new. Posting
records the preview of the current state with the PSA's ``external_id``;
repeating it with the same id is a no-op, another id is refused.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from flowpilot.sessions.v1 import sessions_pb2 as pb
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.ai import AI, Preferences, SessionContext
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition, not_found
from services.sessions import convert, storage


class NoteKind(enum.Enum):
    RESOLUTION_NOTE = "resolution_note"
    ESCALATION_PACKAGE = "escalation_package"


class Notes:
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings

    async def context(self, conn: AsyncConnection, row: Any) -> SessionContext:
        """What the model may know of the session ``row``."""
        facts = await storage.active_fact_texts(conn, row.id)
        fix = await storage.active_fix(conn, row.id)
        return SessionContext(
            ticket_ref=row.ticket_ref,
            title=row.title,
            problem=row.problem,
            status=row.status,
            facts=tuple(facts),
            lane=tuple(convert.lane_view(item) for item in row.pending_task_lane),
            fix_title=fix.title if fix else "",
            fix_steps=tuple(fix.steps) if fix else (),
            fix_status=fix.status if fix else "",
            resolution_summary=row.resolution_summary or "",
            escalation_reason=row.escalation_reason or "",
        )

    async def _generate(self, kind: NoteKind, ctx: SessionContext, prefs: Preferences) -> tuple[str, str]:
        if kind is NoteKind.RESOLUTION_NOTE:
            doc = await self._ai.write_resolution_note(ctx, prefs)
        else:
            doc = await self._ai.write_escalation_package(ctx, prefs)
        return doc.text, doc.model

    async def _load(
        self, session_id: uuid.UUID, kind: NoteKind, fmt: str
    ) -> tuple[Any, Any, SessionContext | None]:
        """(session row, cached preview or None, context when not cached)."""
        async with self._db.transaction() as conn:
            row = await storage.get_session(conn, session_id)
            if row is None:
                raise not_found("session", f"sessions/{session_id}")
            cached = await storage.get_preview(
                conn, session_id, kind=kind.value, state_version=row.state_version, fmt=fmt
            )
            ctx = None if cached is not None else await self.context(conn, row)
        return row, cached, ctx

    async def preview(self, session_id: uuid.UUID, kind: NoteKind) -> pb.NotePreview:
        prefs = await self._settings.preferences()
        row, cached, ctx = await self._load(session_id, kind, prefs.fmt)
        if cached is not None:
            return pb.NotePreview(
                text=cached.text,
                format=cached.format,
                state_version=cached.state_version,
                cached=True,
                model=cached.model,
            )
        assert ctx is not None
        text, model = await self._generate(kind, ctx, prefs)
        async with self._db.transaction() as conn:
            stored = await storage.put_preview(
                conn,
                account_id=current_principal().account_id,
                session_id=session_id,
                kind=kind.value,
                state_version=row.state_version,
                format=prefs.fmt,
                text=text,
                model=model,
            )
        return pb.NotePreview(
            text=stored.text,
            format=stored.format,
            state_version=stored.state_version,
            cached=False,
            model=stored.model,
        )

    async def post(
        self, session_id: uuid.UUID, kind: NoteKind, external_id: str, *, attempts: int = 3
    ) -> Any:
        prefix = kind.value
        for _ in range(attempts):
            async with self._db.transaction() as conn:
                row = await storage.get_session(conn, session_id)
                if row is None:
                    raise not_found("session", f"sessions/{session_id}")
            posted_id = getattr(row, f"{prefix}_external_id")
            if posted_id is not None:
                return self._already_posted(row, kind, posted_id, external_id)
            preview = await self.preview(session_id, kind)
            async with self._db.transaction() as conn:
                row = await storage.get_session(conn, session_id, lock=True)
                if row is None:
                    raise not_found("session", f"sessions/{session_id}")
                posted_id = getattr(row, f"{prefix}_external_id")
                if posted_id is not None:
                    return self._already_posted(row, kind, posted_id, external_id)
                if row.state_version != preview.state_version:
                    continue  # changed while the note was written: write it again
                return await storage.update_session(
                    conn,
                    session_id,
                    bump=False,
                    **{
                        f"{prefix}_markdown": preview.text,
                        f"{prefix}_posted_at": func.now(),
                        f"{prefix}_external_id": external_id,
                        f"{prefix}_state_version": preview.state_version,
                    },
                )
        raise Aborted(
            "the session kept changing while the note was written; retry", reason="CONCURRENT_CHANGE"
        )

    @staticmethod
    def _already_posted(row: Any, kind: NoteKind, posted_id: str, external_id: str) -> Any:
        if posted_id == external_id:
            return row  # a retry: same record, nothing changes
        raise FailedPrecondition(
            f"the {kind.value.replace('_', ' ')} was already posted as {posted_id!r}",
            reason="ALREADY_POSTED",
            metadata={"external_id": posted_id},
        )
