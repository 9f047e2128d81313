"""Resolution notes and escalation packages: the state-versioned preview cache
and posting.

A preview is generated at most once per (session, kind, state version,
format) and stored in ``sessions.note_previews``, so it survives restarts and
is shared by replicas: an unchanged session is served from the table, any
write that bumps ``state_version`` makes the next preview new.

A note tells the session's real history (:func:`history`): the accepted fix
as applied, with who accepted it and when; rejected fixes as ruled out, with
their reason; fixes never decided as open proposals, never as applied; lane
items with their outcome; a timeline, all times in the account's
``notes.time_zone``.

Posting records the preview of the current state with the PSA's
``external_id`` as the document's next revision (``note_revisions``): the
same id again is a no-op; a new id is a correction, allowed once the session
changed since the latest post. The model is never called inside a transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from services.core.ai import AI, Event, FixView, LaneView, Preferences, SessionContext
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition
from services.sessions import handoff, lifecycle, storage
from services.sessions.rows import Fact, Fix, LaneItem, NoteKind, NoteRevision, Preview, Session
from services.sessions.storage import Connection

__all__ = ["NoteKind", "Notes", "context", "history"]


# A note lists at most this many facts and fixes (the newest): a session past
# them is summarised by its newest work.
MAX_NOTE_FACTS = 500
MAX_NOTE_FIXES = 100
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def at(moment: datetime | str | None, zone: ZoneInfo) -> str:
    """A time as notes print it, in the account's time zone ("" when unknown)."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def person(name: str | None, user_id: uuid.UUID | None) -> str:
    """How a note names someone: their display name, else their user id."""
    return name or (str(user_id) if user_id else "")


def lane_view(item: LaneItem, zone: ZoneInfo) -> LaneView:
    return LaneView(
        kind=item["kind"],
        title=item["title"],
        status=item["status"],
        detail=item.get("detail", ""),
        output=item.get("output", ""),
        script_body=item.get("script_body", ""),
        script_language=item.get("script_language", ""),
        at=at(item.get("update_time"), zone) if item["status"] != "pending" else "",
    )


def fix_view(fix: Fix, zone: ZoneInfo) -> FixView:
    return FixView(
        title=fix.title,
        status=fix.status,
        steps=tuple(fix.steps),
        active=fix.supersede_time is None,
        proposed_at=at(fix.create_time, zone),
        decided_by=person(fix.decided_by_name, fix.decided_by),
        decided_at=at(fix.decide_time, zone),
        reject_reason=fix.reject_reason or "",
    )


_CLOSED = {"resolved": "Resolved", "escalated": "Escalated", "abandoned": "Abandoned"}


def timeline(row: Session, facts: Sequence[Fact], fixes: Sequence[Fix]) -> list[tuple[datetime, str]]:
    """What happened, oldest first: the start, each fact, each lane item's
    outcome, each fix proposed and decided, and the end."""
    events: list[tuple[datetime, str]] = [
        (row.create_time, f"Session started by {person(row.created_by_name, row.created_by)}")
    ]
    events += [(f.create_time, f"Found: {f.text}") for f in facts]
    for item in row.pending_task_lane:
        if item["status"] != "pending" and item.get("update_time"):
            events.append(
                (
                    datetime.fromisoformat(item["update_time"]),
                    f"{item['kind'].capitalize()} {item['status']}: {item['title']}",
                )
            )
    for fix in fixes:
        events.append((fix.create_time, f"Fix suggested: {fix.title}"))
        if fix.decide_time is not None:
            verb = "accepted" if fix.status == "accepted" else "ruled out"
            who = person(fix.decided_by_name, fix.decided_by)
            reason = f" ({fix.reject_reason})" if fix.reject_reason else ""
            events.append((fix.decide_time, f"Fix {verb} by {who}: {fix.title}{reason}"))
    if row.end_time is not None and row.status in _CLOSED:
        who = person(row.closed_by_name, row.closed_by)
        events.append((row.end_time, _CLOSED[row.status] + (f" by {who}" if who else "")))
    events.sort(key=lambda event: event[0])
    return events


def history(row: Session, facts: Sequence[Fact], fixes: Sequence[Fix], zone: ZoneInfo) -> SessionContext:
    """What a note (and a model) may know of the session ``row``: its state and
    its real history, times in ``zone``. Pure: the facts and fixes are read
    by the caller, oldest first."""
    return SessionContext(
        ticket_ref=row.ticket_ref,
        title=row.title,
        problem=row.problem,
        status=row.status,
        facts=tuple(f.text for f in facts),
        lane=tuple(lane_view(item, zone) for item in row.pending_task_lane),
        fixes=tuple(fix_view(fix, zone) for fix in fixes),
        resolution_summary=row.resolution_summary or "",
        escalation_reason=row.escalation_reason or "",
        timeline=tuple(Event(at=at(moment, zone), text=text) for moment, text in timeline(row, facts, fixes)),
        time_zone=zone.key,
        started_by=person(row.created_by_name, row.created_by),
        closed_by=person(row.closed_by_name, row.closed_by),
    )


async def context(conn: Connection, row: Session, zone: ZoneInfo | None = None) -> SessionContext:
    """The history of the session ``row`` (times in ``zone``, UTC by default)."""
    facts = await storage.active_facts(conn, row.id, limit=MAX_NOTE_FACTS)
    fixes = await storage.session_fixes(conn, row.id, limit=MAX_NOTE_FIXES)
    return history(row, facts, fixes, zone or ZoneInfo("UTC"))


def check_correction(row: Session, kind: NoteKind) -> None:
    """Posting ``kind`` again under a new external id is a correction, allowed
    only when the session changed since the latest post (it is stale);
    otherwise it would post the same state twice: ALREADY_POSTED."""
    posting = row.posting(kind)
    if posting.external_id is not None and (posting.state_version or 0) >= row.state_version:
        raise FailedPrecondition(
            f"the {kind.value.replace('_', ' ')} of this state was already posted as {posting.external_id!r}; "
            "post again once the session has changed",
            reason="ALREADY_POSTED",
            metadata={"external_id": posting.external_id},
        )


# The prompt each kind is written with; its version is recorded on the
# preview and on the revision posted from it (the ``system`` prompt's is not).
_PROMPT = {NoteKind.RESOLUTION_NOTE: "task.note", NoteKind.ESCALATION_PACKAGE: "task.package"}


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

    async def time_zone(self) -> ZoneInfo:
        """The account's ``notes.time_zone`` (the settings service checked it is a known zone)."""
        return ZoneInfo(await self._settings.choice("notes.time_zone"))

    async def _load(
        self, account: uuid.UUID, session_id: uuid.UUID, kind: NoteKind, prefs: Preferences
    ) -> tuple[Session, Preview | None, SessionContext | None]:
        """(session row, cached preview or None, context when not cached)."""
        zone = await self.time_zone()
        async with self._db.transaction(account) as conn:
            row = await lifecycle.find(conn, session_id)
            cached = await storage.get_preview(
                conn,
                session_id,
                kind=kind,
                state_version=row.state_version,
                fmt=prefs.fmt,
                time_zone=zone.key,
                prompt_version=prefs.prompts.version(_PROMPT[kind]),
            )
            ctx = None if cached is not None else await context(conn, row, zone)
        return row, cached, ctx

    async def preview(
        self, account: uuid.UUID, session_id: uuid.UUID, kind: NoteKind
    ) -> tuple[Preview, bool]:
        """The note of the session's current state, and whether it was cached."""
        prefs = await self._settings.preferences()
        row, cached, ctx = await self._load(account, session_id, kind, prefs)
        if cached is not None:
            return cached, True
        assert ctx is not None
        text, model = await self._generate(kind, ctx, prefs)
        async with self._db.transaction(account) as conn:
            stored = await storage.put_preview(
                conn,
                account_id=account,
                session_id=session_id,
                kind=kind,
                state_version=row.state_version,
                fmt=prefs.fmt,
                time_zone=ctx.time_zone,
                text=text,
                model=model,
                prompt_version=prefs.prompts.version(_PROMPT[kind]),
            )
        return stored, False

    async def post(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        kind: NoteKind,
        external_id: str,
        *,
        attempts: int = 3,
    ) -> Session:
        """Records the note of the current state as posted under ``external_id``
        (its next revision). The same id again changes nothing."""
        account = principal.account_id
        for _ in range(attempts):
            async with self._db.transaction(account) as conn:
                row = await lifecycle.find(conn, session_id)
                if await storage.revision_by_external_id(conn, session_id, kind, external_id):
                    return row
            handoff.require_worker(row, principal)
            check_correction(row, kind)
            preview, _ = await self.preview(account, session_id, kind)
            async with self._db.transaction(account) as conn:
                row = await lifecycle.find(conn, session_id, lock=True)
                if await storage.revision_by_external_id(conn, session_id, kind, external_id):
                    return row
                handoff.require_worker(row, principal)
                check_correction(row, kind)
                if row.state_version != preview.state_version:
                    continue  # changed while the note was written: write it again
                return await storage.record_posting(
                    conn,
                    row,
                    account_id=account,
                    kind=kind,
                    text=preview.text,
                    fmt=preview.format,
                    external_id=external_id,
                    state_version=preview.state_version,
                    posted_by=principal.user_id,
                    posted_by_name=principal.display_name or None,
                    prompt_version=preview.prompt_version,
                )
        raise Aborted(
            "the session kept changing while the note was written; retry", reason="CONCURRENT_CHANGE"
        )

    async def revisions(
        self,
        account: uuid.UUID,
        session_id: uuid.UUID,
        *,
        kind: NoteKind | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[NoteRevision]:
        async with self._db.transaction(account) as conn:
            await lifecycle.find(conn, session_id)
            return await storage.list_note_revisions(conn, session_id, kind=kind, after=after, limit=limit)
