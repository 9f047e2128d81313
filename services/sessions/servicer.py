"""gRPC surface of the sessions service: decode, apply the rules, encode.

Every write locks the session row first (``SELECT … FOR UPDATE``), checks
that the session is active, changes what it changes and increments
``state_version`` in the same transaction. Model calls never happen inside a
transaction: the context is read, the model is called, then the result is
written in a second transaction that re-checks the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core import ids, names, pagination, requests, validation
from services.core.ai import AI
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    not_found,
)
from services.core.rpc import created
from services.sessions import convert, storage
from services.sessions.convert import DEAD_LETTER, FACT, FIX, LANE_ITEM
from services.sessions.notes import NoteKind, Notes
from services.sessions.outbox import TOPIC_LIBRARY_DRAFTS, OutboxDelivery, trace_carrier

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

MAX_LANE_ITEMS = 200
# A session's task lane holds at most this much detail, script and output.
MAX_LANE_BYTES = 8 * 1024 * 1024
FULL_PAGE_SIZE = 10


def _not_active(row: Any) -> FailedPrecondition:
    return FailedPrecondition(
        f"session is {row.status}; only active sessions can change",
        reason="SESSION_NOT_ACTIVE",
        metadata={"status": row.status},
    )


def _check_lane_size(lane: list[dict[str, Any]]) -> None:
    if sum(convert.lane_content_bytes(item) for item in lane) > MAX_LANE_BYTES:
        raise FailedPrecondition(
            f"the task lane holds at most {MAX_LANE_BYTES // (1024 * 1024)} MiB of detail, scripts and output",
            reason="LANE_FULL",
        )


def _next(rows: list[Any], limit: int, query: str) -> str:
    return pagination.next_page_token(
        rows, limit, query_fingerprint=query, key=lambda r: r.create_time.isoformat()
    )


class SessionsServicer(sessions_pb2_grpc.SessionsServiceServicer):
    def __init__(
        self,
        db: Database,
        ai: AI,
        settings: SettingsReader,
        *,
        outbox: OutboxDelivery | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings
        self._outbox = outbox
        self._clock = clock
        self._notes = Notes(db, ai, settings)

    # --- helpers ---------------------------------------------------------------

    async def _session(self, conn: AsyncConnection, session_id: uuid.UUID, *, lock: bool = False) -> Any:
        row = await storage.get_session(conn, session_id, lock=lock)
        if row is None:
            raise not_found("session", f"sessions/{session_id}")
        return row

    async def _active(self, conn: AsyncConnection, session_id: uuid.UUID) -> Any:
        row = await self._session(conn, session_id, lock=True)
        if row.status != "active":
            raise _not_active(row)
        return row

    # --- sessions ---------------------------------------------------------------

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Context
    ) -> pb.CreateSessionResponse:
        principal = current_principal()
        given = request.session
        ticket_ref = validation.nonblank(given.ticket_ref, "session.ticket_ref").strip()
        title = validation.nonblank(given.title, "session.title").strip()
        kind = convert.TICKET_KIND.db(given.ticket_kind, field="session.ticket_kind")
        request_id = None
        if request.request_id:
            request_id = convert.parse_id(request.request_id, field="request_id", kind="request id (UUID)")
        facts = [
            (
                validation.nonblank(fact.text, f"facts[{i}].text"),
                convert.FACT_SOURCE.db(fact.source or pb.FACT_SOURCE_USER, field=f"facts[{i}].source"),
            )
            for i, fact in enumerate(request.facts)
        ]
        if any(source == "task_lane" for _, source in facts):
            raise InvalidArgument(FieldViolation("facts", "a new session has no task lane to refer to"))
        fingerprint = requests.fingerprint(principal, request)
        async with self._db.transaction() as conn:
            # Serialise creation per (user, ticket); a retry's request id is
            # checked under the same lock, so concurrent retries create one.
            await storage.lock_ticket(conn, user_id=principal.user_id, ticket_ref=ticket_ref)
            if request_id is not None:
                earlier = await storage.session_by_request_id(conn, request_id)
                if earlier is not None:
                    requests.check_replay(earlier.request_fingerprint, fingerprint)
                    return pb.CreateSessionResponse(session=convert.session(earlier))
            if not request.force_new:
                active = await storage.active_session_for(
                    conn, user_id=principal.user_id, ticket_ref=ticket_ref
                )
                if active is not None:
                    return pb.CreateSessionResponse(session=convert.session(active), resumed=True)
            try:
                row = await storage.insert_session(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    ticket_ref=ticket_ref,
                    ticket_kind=kind,
                    title=title,
                    problem=given.problem,
                    created_by=principal.user_id,
                    request_id=request_id,
                    request_fingerprint=fingerprint if request_id is not None else None,
                )
                now = self._clock()
                for order, (text, source) in enumerate(facts):
                    await storage.insert_fact(
                        conn,
                        account_id=principal.account_id,
                        id=uuid.uuid4(),
                        session_id=row.id,
                        text=text,
                        source=source,
                        created_by=principal.user_id,
                        # Facts list by create time: keep the request's order.
                        create_time=now + timedelta(microseconds=order),
                        update_time=now,
                    )
            except IntegrityError as exc:
                if "ai_sessions_request_id_key" not in str(exc.orig):
                    raise
                # The request id of another ticket's request (another lock).
                raise AlreadyExists(
                    "request_id was already used by another caller or for another request",
                    reason="REQUEST_ID_REUSED",
                ) from exc
        session = convert.session(row)
        created(session.name)
        return pb.CreateSessionResponse(session=session)

    async def GetSession(self, request: pb.GetSessionRequest, context: Context) -> pb.Session:
        session_id = convert.session_id(request.name)
        row = await storage.read_session(self._db, session_id)
        if row is None:
            raise not_found("session", f"sessions/{session_id}")
        return convert.session(row, view=request.view or pb.SESSION_VIEW_FULL)

    async def GetLaneItem(self, request: pb.GetLaneItemRequest, context: Context) -> pb.LaneItem:
        session_id, item_id = convert.child_ids(request.name, LANE_ITEM, "lane_item")
        row = await storage.read_session(self._db, session_id)
        item = next((i for i in row.pending_task_lane if i["id"] == item_id), None) if row else None
        if item is None:
            raise not_found("lane item", request.name)
        return convert.lane_item(session_id, item)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        full = request.view == pb.SESSION_VIEW_FULL
        # A FULL page reads whole lanes (up to 8 MiB each): at most 10 of them.
        limit = min(
            pagination.page_size(request.page_size), FULL_PAGE_SIZE if full else pagination.MAX_PAGE_SIZE
        )
        status = convert.SESSION_STATUS.db(request.status) if request.status else None
        query = pagination.fingerprint(
            current_principal().account_id, {"status": status, "ticket_ref": request.ticket_ref}
        )
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            rows = list(
                await storage.list_sessions(
                    conn,
                    status=status,
                    ticket_ref=request.ticket_ref or None,
                    after=after,
                    limit=limit + 1,
                    whole_lanes=full,
                )
            )
        # The page ends early rather than grow past the response budget.
        sessions: list[pb.Session] = []
        size = 0
        for row in rows[:limit]:
            message = convert.session(
                row,
                view=pb.SESSION_VIEW_FULL if full else pb.SESSION_VIEW_BASIC,
                budget=convert.Budget(convert.RESPONSE_BUDGET_BYTES - size),
            )
            # A FULL page also ends before a session whose lane no longer fits
            # whole: it starts the next page, with the whole budget.
            if sessions and (
                size + message.ByteSize() > convert.RESPONSE_BUDGET_BYTES
                or (full and any(item.content_omitted for item in message.lane_items))
            ):
                break
            sessions.append(message)
            size += message.ByteSize()
        return pb.ListSessionsResponse(
            sessions=sessions, next_page_token=_next(rows, len(sessions), query) if sessions else ""
        )

    async def UpdateSession(self, request: pb.UpdateSessionRequest, context: Context) -> pb.Session:
        session_id = convert.session_id(request.session.name, field="session.name")
        paths = validation.update_paths(
            request.session,
            request.update_mask.paths,
            allowed={"title", "problem"},
            default={"title", "problem"},
            prefix="session",
        )
        values: dict[str, Any] = {}
        if "title" in paths:
            values["title"] = validation.nonblank(request.session.title, "session.title").strip()
        if "problem" in paths:
            values["problem"] = request.session.problem
        expected = ids.parse_etag(request.session.etag, field="session.etag")
        async with self._db.transaction() as conn:
            row = await self._active(conn, session_id)
            if expected is not None and expected != row.state_version:
                raise Aborted(
                    f"session changed (state version {row.state_version}, etag {expected}); read it again",
                    reason="ETAG_MISMATCH",
                )
            row = await storage.update_session(conn, session_id, **values)
        return convert.session(row)

    # --- task lane ---------------------------------------------------------------

    async def CreateLaneItem(self, request: pb.CreateLaneItemRequest, context: Context) -> pb.LaneItem:
        session_id = convert.session_id(request.parent, field="parent")
        given = request.lane_item
        kind = convert.LANE_KIND.db(given.kind, field="lane_item.kind")
        if (given.script_body or given.script_language) and kind != "script":
            raise InvalidArgument(FieldViolation("lane_item.script_body", "only script items carry a script"))
        if kind == "script" and given.script_body and not given.script_language:
            raise InvalidArgument(
                FieldViolation("lane_item.script_language", "is required with a script body")
            )
        now = self._clock().isoformat()
        item = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "title": validation.nonblank(given.title, "lane_item.title").strip(),
            "detail": given.detail,
            "script_body": given.script_body,
            "script_language": convert.LANGUAGE.db(given.script_language, field="lane_item.script_language"),
            "status": convert.LANE_STATUS.db(given.status, field="lane_item.status")
            if given.status
            else "pending",
            "output": given.output,
            "create_time": now,
            "update_time": now,
        }
        async with self._db.transaction() as conn:
            row = await self._active(conn, session_id)
            if len(row.pending_task_lane) >= MAX_LANE_ITEMS:
                raise FailedPrecondition(
                    f"the task lane holds at most {MAX_LANE_ITEMS} items", reason="LANE_FULL"
                )
            lane = [*row.pending_task_lane, item]
            _check_lane_size(lane)
            await storage.update_session(conn, session_id, pending_task_lane=lane)
        lane_item = convert.lane_item(session_id, item)
        created(lane_item.name)
        return lane_item

    async def UpdateLaneItem(self, request: pb.UpdateLaneItemRequest, context: Context) -> pb.LaneItem:
        session_id, item_id = convert.child_ids(
            request.lane_item.name, LANE_ITEM, "lane_item", field="lane_item.name"
        )
        given = request.lane_item
        paths = validation.update_paths(
            given,
            request.update_mask.paths,
            allowed={"status", "output", "title", "detail"},
            default={"status", "output"},
            prefix="lane_item",
        )
        changes: dict[str, Any] = {}
        if "status" in paths:
            changes["status"] = convert.LANE_STATUS.db(given.status, field="lane_item.status")
        if "output" in paths:
            changes["output"] = given.output
        if "title" in paths:
            changes["title"] = validation.nonblank(given.title, "lane_item.title").strip()
        if "detail" in paths:
            changes["detail"] = given.detail
        async with self._db.transaction() as conn:
            row = await self._session(conn, session_id, lock=True)
            lane = [dict(item) for item in row.pending_task_lane]
            item = next((i for i in lane if i["id"] == item_id), None)
            if item is None:
                raise not_found("lane item", request.lane_item.name)
            if row.status != "active":
                raise _not_active(row)
            item.update(changes, update_time=self._clock().isoformat())
            _check_lane_size(lane)
            await storage.update_session(conn, session_id, pending_task_lane=lane)
        return convert.lane_item(session_id, item)

    # --- facts ---------------------------------------------------------------------

    def _source_ref(self, session_id: uuid.UUID, value: str, field: str) -> str | None:
        if not value:
            return None
        ref_session, item_id = convert.child_ids(value, LANE_ITEM, "lane_item", field=field)
        if ref_session != session_id:
            raise InvalidArgument(FieldViolation(field, "must name a task-lane item of the same session"))
        return item_id

    @staticmethod
    def _check_ref(row: Any, item_id: str | None, field: str) -> None:
        if item_id is not None and not any(i["id"] == item_id for i in row.pending_task_lane):
            raise InvalidArgument(FieldViolation(field, "is not an item of this session's task lane"))

    async def CreateFact(self, request: pb.CreateFactRequest, context: Context) -> pb.Fact:
        principal = current_principal()
        session_id = convert.session_id(request.parent, field="parent")
        text = validation.nonblank(request.fact.text, "fact.text")
        source = convert.FACT_SOURCE.db(request.fact.source, field="fact.source")
        ref = self._source_ref(session_id, request.fact.source_ref, "fact.source_ref")
        if source == "task_lane" and ref is None:
            raise InvalidArgument(
                FieldViolation("fact.source_ref", "is required for facts from the task lane")
            )
        async with self._db.transaction() as conn:
            row = await self._active(conn, session_id)
            self._check_ref(row, ref, "fact.source_ref")
            fact = await storage.insert_fact(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                session_id=session_id,
                text=text,
                source=source,
                source_ref=ref,
                created_by=principal.user_id,
            )
            await storage.update_session(conn, session_id)
        message = convert.fact(fact)
        created(message.name)
        return message

    async def _fact(self, conn: AsyncConnection, name: str, field: str = "name") -> tuple[uuid.UUID, Any]:
        session_id, fact_text_id = convert.child_ids(name, FACT, "fact", field=field)
        fact_id = convert.parse_id(fact_text_id, field=field, kind="fact")
        row = await storage.get_fact(conn, session_id, fact_id)
        if row is None:
            raise not_found("fact", name)
        return session_id, row

    async def GetFact(self, request: pb.GetFactRequest, context: Context) -> pb.Fact:
        async with self._db.transaction() as conn:
            _, row = await self._fact(conn, request.name)
        return convert.fact(row)

    async def ListFacts(self, request: pb.ListFactsRequest, context: Context) -> pb.ListFactsResponse:
        session_id = convert.session_id(request.parent, field="parent")
        limit = pagination.page_size(request.page_size)
        query = pagination.fingerprint(
            current_principal().account_id, {"session": str(session_id), "deleted": request.show_deleted}
        )
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        rows = await storage.list_facts(
            self._db, session_id, show_deleted=request.show_deleted, after=after, limit=limit + 1
        )
        if rows is None:
            raise not_found("session", f"sessions/{session_id}")
        token = _next(rows, limit, query)
        return pb.ListFactsResponse(facts=[convert.fact(r) for r in rows[:limit]], next_page_token=token)

    async def UpdateFact(self, request: pb.UpdateFactRequest, context: Context) -> pb.Fact:
        paths = validation.update_paths(
            request.fact,
            request.update_mask.paths,
            allowed={"text", "source_ref"},
            default={"text"},
            prefix="fact",
        )
        session_id, _ = convert.child_ids(request.fact.name, FACT, "fact", field="fact.name")
        values: dict[str, Any] = {}
        if "text" in paths:
            values["text"] = validation.nonblank(request.fact.text, "fact.text")
        ref = None
        if "source_ref" in paths:
            ref = self._source_ref(session_id, request.fact.source_ref, "fact.source_ref")
            values["source_ref"] = ref
        async with self._db.transaction() as conn:
            session_row = await self._session(conn, session_id, lock=True)
            _, fact = await self._fact(conn, request.fact.name, field="fact.name")
            if session_row.status != "active":
                raise _not_active(session_row)
            if fact.deleted_at is not None:
                raise FailedPrecondition("fact is deleted; undelete it first", reason="FACT_DELETED")
            if fact.source == "task_lane" and "source_ref" in paths and ref is None:
                raise InvalidArgument(
                    FieldViolation("fact.source_ref", "is required for facts from the task lane")
                )
            self._check_ref(session_row, ref, "fact.source_ref")
            fact = await storage.update_fact(conn, fact.id, **values)
            await storage.update_session(conn, session_id)
        return convert.fact(fact)

    async def _set_deleted(self, name: str, *, deleted: bool) -> pb.Fact:
        session_id, _ = convert.child_ids(name, FACT, "fact")
        async with self._db.transaction() as conn:
            session_row = await self._session(conn, session_id, lock=True)
            _, fact = await self._fact(conn, name)
            if session_row.status != "active":
                raise _not_active(session_row)
            if (fact.deleted_at is not None) == deleted:
                if deleted:
                    return convert.fact(fact)  # deleting twice changes nothing
                raise FailedPrecondition("fact is not deleted", reason="FACT_NOT_DELETED")
            fact = await storage.update_fact(conn, fact.id, deleted_at=self._clock() if deleted else None)
            await storage.update_session(conn, session_id)
        return convert.fact(fact)

    async def DeleteFact(self, request: pb.DeleteFactRequest, context: Context) -> pb.Fact:
        return await self._set_deleted(request.name, deleted=True)

    async def UndeleteFact(self, request: pb.UndeleteFactRequest, context: Context) -> pb.Fact:
        return await self._set_deleted(request.name, deleted=False)

    # --- fixes ---------------------------------------------------------------------

    async def SuggestFix(self, request: pb.SuggestFixRequest, context: Context) -> pb.SuggestedFix:
        principal = current_principal()
        session_id = convert.session_id(request.parent, field="parent")
        async with self._db.transaction() as conn:
            row = await self._session(conn, session_id)
            if row.status != "active":
                raise _not_active(row)
            ctx = await self._notes.context(conn, row)
        prefs = await self._settings.preferences()
        suggestion = await self._ai.suggest_fix(ctx, prefs)
        async with self._db.transaction() as conn:
            await self._active(conn, session_id)
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
                state_version=row.state_version,
            )
            await storage.update_session(conn, session_id)
        return convert.fix(fix)

    async def GetActiveFix(self, request: pb.GetActiveFixRequest, context: Context) -> pb.SuggestedFix:
        session_id = convert.session_id(request.parent, field="parent")
        async with self._db.transaction() as conn:
            await self._session(conn, session_id)
            fix = await storage.active_fix(conn, session_id)
        if fix is None:
            raise not_found("active fix", f"{request.parent}/fixes:active")
        return convert.fix(fix)

    async def ListFixes(self, request: pb.ListFixesRequest, context: Context) -> pb.ListFixesResponse:
        session_id = convert.session_id(request.parent, field="parent")
        limit = pagination.page_size(request.page_size)
        query = pagination.fingerprint(current_principal().account_id, {"fixes": str(session_id)})
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            await self._session(conn, session_id)
            rows = list(await storage.list_fixes(conn, session_id, after=after, limit=limit + 1))
        return pb.ListFixesResponse(
            fixes=[convert.fix(r) for r in rows[:limit]], next_page_token=_next(rows, limit, query)
        )

    # --- dead letters ------------------------------------------------------------

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        limit = pagination.page_size(request.page_size)
        query = pagination.fingerprint(current_principal().account_id, {"dead_letters": True})
        after = pagination.keyset_after(
            request.page_token, query_fingerprint=query, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            rows = list(await storage.list_dead_letters(conn, after=after, limit=limit + 1))
        token = pagination.next_page_token(
            rows, limit, query_fingerprint=query, key=lambda r: r.dead_at.isoformat()
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[convert.dead_letter(r) for r in rows[:limit]], next_page_token=token
        )

    async def RetryDeadLetter(self, request: pb.RetryDeadLetterRequest, context: Context) -> pb.DeadLetter:
        letter_id = convert.parse_id(
            names.parse(request.name, DEAD_LETTER)["dead_letter"], field="name", kind="dead letter"
        )
        async with self._db.transaction() as conn:
            row = await storage.retry_dead_letter(conn, letter_id)
        if row is None:
            raise not_found("dead letter", request.name)
        if self._outbox is not None:
            self._outbox.kick()
        return convert.dead_letter(row)

    async def _decide(self, name: str, status: str) -> pb.SuggestedFix:
        session_id, fix_text_id = convert.child_ids(name, FIX, "fix")
        fix_id = convert.parse_id(fix_text_id, field="name", kind="fix")
        async with self._db.transaction() as conn:
            session_row = await self._session(conn, session_id, lock=True)
            fix = await storage.get_fix(conn, session_id, fix_id)
            if fix is None:
                raise not_found("fix", name)
            if session_row.status != "active":
                raise _not_active(session_row)
            decided = await storage.decide_fix(conn, fix_id, status)
            if decided is None:
                state = "superseded" if fix.superseded_at is not None else fix.status
                raise FailedPrecondition(
                    f"fix is {state}; only the active proposed fix can be decided", reason="FIX_NOT_OPEN"
                )
            await storage.update_session(conn, session_id)
        return convert.fix(decided)

    async def AcceptFix(self, request: pb.AcceptFixRequest, context: Context) -> pb.SuggestedFix:
        return await self._decide(request.name, "accepted")

    async def RejectFix(self, request: pb.RejectFixRequest, context: Context) -> pb.SuggestedFix:
        return await self._decide(request.name, "rejected")

    # --- lifecycle -------------------------------------------------------------------

    async def _transition(
        self, name: str, status: str, *, draft_scripts: bool = False, **values: Any
    ) -> pb.Session:
        session_id = convert.session_id(name)
        queued = False
        async with self._db.transaction() as conn:
            row = await self._session(conn, session_id, lock=True)
            if row.status != "active":
                raise FailedPrecondition(
                    f"cannot move a {row.status} session to {status}",
                    reason="INVALID_TRANSITION",
                    metadata={"status": row.status},
                )
            row = await storage.update_session(
                conn, session_id, status=status, end_time=self._clock(), **values
            )
            if draft_scripts:
                queued = await self._queue_drafts(conn, row)
        if queued and self._outbox is not None:
            self._outbox.kick()
        return convert.session(row)

    async def _queue_drafts(self, conn: AsyncConnection, row: Any) -> bool:
        """Records, in the resolve's transaction, each successful script for the
        library: one outbox row (one small message) per script."""
        principal = current_principal()
        session = names.format_name(convert.SESSION, session=row.id)
        queued = False
        for item in row.pending_task_lane:
            if not (
                item["kind"] == "script"
                and item["status"] == "done"
                and item.get("script_body")
                and item.get("script_language")
            ):
                continue
            await storage.insert_outbox(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                topic=TOPIC_LIBRARY_DRAFTS,
                dedupe_key=f"{row.id}/{item['id']}",
                payload={
                    "session": session,
                    "resolved_by": str(principal.user_id),
                    "ticket_ref": row.ticket_ref,
                    "scripts": [
                        {
                            "lane_item": names.format_name(LANE_ITEM, session=row.id, lane_item=item["id"]),
                            "script_body": item["script_body"],
                            "language": item["script_language"],
                            "title": item["title"],
                        }
                    ],
                },
                trace=trace_carrier(),
            )
            queued = True
        return queued

    async def ResolveSession(self, request: pb.ResolveSessionRequest, context: Context) -> pb.Session:
        summary = validation.nonblank(request.summary, "summary")
        auto_draft = bool((await self._settings.values()).get("library.auto_draft_scripts", True))
        return await self._transition(
            request.name, "resolved", draft_scripts=auto_draft, resolution_summary=summary
        )

    async def EscalateSession(self, request: pb.EscalateSessionRequest, context: Context) -> pb.Session:
        reason = validation.nonblank(request.reason, "reason")
        return await self._transition(request.name, "escalated", escalation_reason=reason)

    async def AbandonSession(self, request: pb.AbandonSessionRequest, context: Context) -> pb.Session:
        return await self._transition(request.name, "abandoned")

    # --- notes and packages ---------------------------------------------------------

    async def PreviewResolutionNote(
        self, request: pb.PreviewResolutionNoteRequest, context: Context
    ) -> pb.NotePreview:
        return await self._notes.preview(convert.session_id(request.name), NoteKind.RESOLUTION_NOTE)

    async def PreviewEscalationPackage(
        self, request: pb.PreviewEscalationPackageRequest, context: Context
    ) -> pb.NotePreview:
        return await self._notes.preview(convert.session_id(request.name), NoteKind.ESCALATION_PACKAGE)

    async def PostResolutionNote(self, request: pb.PostResolutionNoteRequest, context: Context) -> pb.Session:
        external_id = validation.nonblank(request.external_id, "external_id").strip()
        row = await self._notes.post(convert.session_id(request.name), NoteKind.RESOLUTION_NOTE, external_id)
        return convert.session(row)

    async def PostEscalationPackage(
        self, request: pb.PostEscalationPackageRequest, context: Context
    ) -> pb.Session:
        external_id = validation.nonblank(request.external_id, "external_id").strip()
        row = await self._notes.post(
            convert.session_id(request.name), NoteKind.ESCALATION_PACKAGE, external_id
        )
        return convert.session(row)
