"""gRPC surface of the sessions service: decode the request, call the domain
(:mod:`lifecycle`, :mod:`lane`, :mod:`facts`, :mod:`fixes`, :mod:`notes`,
:mod:`dead_letters`), encode the answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.sessions.v1 import sessions_pb2_grpc

from services.core import ids, pagination, requests, validation
from services.core.ai import AI
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.rpc import created
from services.sessions import convert, lifecycle, rpcs
from services.sessions.copilot import Copilot
from services.sessions.copilot_servicer import CopilotMethods
from services.sessions.dead_letters import DeadLetters
from services.sessions.facts import Facts
from services.sessions.fixes import Fixes
from services.sessions.knowledge import Library
from services.sessions.lane import Lane
from services.sessions.notes import NoteKind, Notes
from services.sessions.outbox import OutboxDelivery
from services.sessions.resources import FIX, LANE_ITEM, child_ids, dead_letter_id, session_id
from services.sessions.rpcs import Context
from services.sessions.usage import Usage


class SessionsServicer(CopilotMethods, sessions_pb2_grpc.SessionsServiceServicer):
    """The sessions service's RPCs (the copilot's in :class:`CopilotMethods`)."""

    def __init__(
        self,
        db: Database,
        ai: AI,
        settings: SettingsReader,
        *,
        outbox: OutboxDelivery | None = None,
        library: Library | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        kick = outbox.kick if outbox is not None else None
        self._clock = clock
        self._lifecycle = lifecycle.Lifecycle(db, settings, clock=clock, kick=kick)
        self._lane = Lane(db, clock)
        self._facts = Facts(db, clock)
        self._fixes = Fixes(db, ai, settings)
        self._notes = Notes(db, ai, settings)
        self._dead_letters = DeadLetters(db, kick=kick)
        self._copilot = Copilot(db, ai, settings, clock, library)
        self._usage = Usage(db, settings, clock)

    # --- sessions ---------------------------------------------------------------

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Context
    ) -> pb.CreateSessionResponse:
        principal = current_principal()
        new = convert.new_session(request, fingerprint=lambda: requests.fingerprint(principal, request))
        result = await self._lifecycle.create(principal, new)
        session = convert.session(result.session)
        if not (result.replayed or result.resumed):
            created(session.name)
        return pb.CreateSessionResponse(
            session=session, resumed=result.resumed, handed_over=result.handed_over
        )

    async def GetSession(self, request: pb.GetSessionRequest, context: Context) -> pb.Session:
        row = await self._lifecycle.get(rpcs.account(), session_id(request.name))
        return convert.session(row, view=request.view or pb.SESSION_VIEW_FULL)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        full = request.view == pb.SESSION_VIEW_FULL
        pagination.page_size(request.page_size)  # a bad page size is named before a bad status
        status = convert.SESSION_STATUS.db(request.status) if request.status else None
        assignee = convert.assignee_filter(request, me=current_principal().user_id)
        query: dict[str, object] = {"status": status, "ticket_ref": request.ticket_ref}
        if assignee is not None:
            query["assignee"] = str(assignee)  # `me` signed as the caller's id
        if request.unassigned:
            query["unassigned"] = True
        paging = pagination.paging(
            request,
            current_principal().account_id,
            query,
            first=datetime.fromisoformat,
            max_page_size=rpcs.FULL_PAGE_SIZE if full else pagination.MAX_PAGE_SIZE,
        )
        rows = await self._lifecycle.page(
            rpcs.account(),
            status=status,
            ticket_ref=request.ticket_ref or None,
            after=paging.after,
            limit=paging.fetch,
            whole_lanes=full,
            assignee=assignee,
            unassigned=request.unassigned,
        )
        sessions = convert.session_page(rows, paging.limit, full=full)
        # The next page starts after the last session shown, which may be before the limit.
        token = paging.token_after(rows, len(sessions), key=rpcs.by_create_time)
        return pb.ListSessionsResponse(sessions=sessions, next_page_token=token if sessions else "")

    async def UpdateSession(self, request: pb.UpdateSessionRequest, context: Context) -> pb.Session:
        sid, edit = convert.session_edit(request)
        return convert.session(await self._lifecycle.update(current_principal(), sid, edit))

    async def ResolveSession(self, request: pb.ResolveSessionRequest, context: Context) -> pb.Session:
        summary = validation.nonblank(request.summary, "summary")
        # The account's setting is read before the name is, as it always was.
        draft_scripts = await self._lifecycle.drafts_scripts()
        sid = session_id(request.name)
        row = await self._lifecycle.resolve(current_principal(), sid, summary, draft_scripts=draft_scripts)
        return convert.session(row)

    async def EscalateSession(self, request: pb.EscalateSessionRequest, context: Context) -> pb.Session:
        reason = validation.nonblank(request.reason, "reason")
        row = await self._lifecycle.escalate(current_principal(), session_id(request.name), reason)
        return convert.session(row)

    async def AbandonSession(self, request: pb.AbandonSessionRequest, context: Context) -> pb.Session:
        return convert.session(await self._lifecycle.abandon(current_principal(), session_id(request.name)))

    # --- task lane ---------------------------------------------------------------

    async def GetLaneItem(self, request: pb.GetLaneItemRequest, context: Context) -> pb.LaneItem:
        sid, item_id = child_ids(request.name, LANE_ITEM, "lane_item")
        return convert.lane_item(sid, await self._lane.get(rpcs.account(), sid, item_id, request.name))

    async def CreateLaneItem(self, request: pb.CreateLaneItemRequest, context: Context) -> pb.LaneItem:
        sid = session_id(request.parent, field="parent")
        item = convert.new_lane_item(
            request.lane_item, item_id=str(uuid.uuid4()), now=self._clock().isoformat()
        )
        await self._lane.add(current_principal(), sid, item)
        lane_item = convert.lane_item(sid, item)
        created(lane_item.name)
        return lane_item

    async def UpdateLaneItem(self, request: pb.UpdateLaneItemRequest, context: Context) -> pb.LaneItem:
        given = request.lane_item
        sid, item_id = child_ids(given.name, LANE_ITEM, "lane_item", field="lane_item.name")
        paths = validation.update_paths(
            given,
            request.update_mask.paths,
            allowed={"status", "output", "title", "detail"},
            default={"status", "output"},
            prefix="lane_item",
        )
        item = await self._lane.update(
            current_principal(), sid, item_id, given.name, convert.lane_changes(given, paths)
        )
        return convert.lane_item(sid, item)

    # --- facts ---------------------------------------------------------------------

    async def CreateFact(self, request: pb.CreateFactRequest, context: Context) -> pb.Fact:
        sid = session_id(request.parent, field="parent")
        fact = await self._facts.create(current_principal(), sid, convert.new_fact(sid, request.fact))
        message = convert.fact(fact)
        created(message.name)
        return message

    async def GetFact(self, request: pb.GetFactRequest, context: Context) -> pb.Fact:
        return convert.fact(await self._facts.get(rpcs.account(), request.name))

    async def ListFacts(self, request: pb.ListFactsRequest, context: Context) -> pb.ListFactsResponse:
        sid = session_id(request.parent, field="parent")
        paging = rpcs.paging(request, {"session": str(sid), "deleted": request.show_deleted})
        rows = await self._facts.page(
            rpcs.account(), sid, show_deleted=request.show_deleted, after=paging.after, limit=paging.fetch
        )
        shown, token = paging.page(rows, key=rpcs.by_create_time)
        return pb.ListFactsResponse(facts=[convert.fact(r) for r in shown], next_page_token=token)

    async def UpdateFact(self, request: pb.UpdateFactRequest, context: Context) -> pb.Fact:
        sid, edit = convert.fact_edit(request)
        return convert.fact(await self._facts.update(current_principal(), sid, request.fact.name, edit))

    async def DeleteFact(self, request: pb.DeleteFactRequest, context: Context) -> pb.Fact:
        return convert.fact(await self._facts.set_deleted(current_principal(), request.name, deleted=True))

    async def UndeleteFact(self, request: pb.UndeleteFactRequest, context: Context) -> pb.Fact:
        return convert.fact(await self._facts.set_deleted(current_principal(), request.name, deleted=False))

    # --- fixes ---------------------------------------------------------------------

    async def SuggestFix(self, request: pb.SuggestFixRequest, context: Context) -> pb.SuggestedFix:
        principal = current_principal()
        return convert.fix(await self._fixes.suggest(principal, session_id(request.parent, field="parent")))

    async def GetActiveFix(self, request: pb.GetActiveFixRequest, context: Context) -> pb.SuggestedFix:
        sid = session_id(request.parent, field="parent")
        return convert.fix(await self._fixes.active(rpcs.account(), sid, f"{request.parent}/fixes:active"))

    async def ListFixes(self, request: pb.ListFixesRequest, context: Context) -> pb.ListFixesResponse:
        sid = session_id(request.parent, field="parent")
        paging = rpcs.paging(request, {"fixes": str(sid)})
        rows = await self._fixes.page(rpcs.account(), sid, after=paging.after, limit=paging.fetch)
        shown, token = paging.page(rows, key=rpcs.by_create_time)
        return pb.ListFixesResponse(fixes=[convert.fix(r) for r in shown], next_page_token=token)

    async def _decide(self, name: str, status: str, reason: str | None = None) -> pb.SuggestedFix:
        sid, fix_text_id = child_ids(name, FIX, "fix")
        fix_id = ids.parse_uuid(fix_text_id, field="name", what="fix id")
        decided = await self._fixes.decide(current_principal(), sid, fix_id, name, status, reason=reason)
        return convert.fix(decided)

    async def AcceptFix(self, request: pb.AcceptFixRequest, context: Context) -> pb.SuggestedFix:
        return await self._decide(request.name, "accepted")

    async def RejectFix(self, request: pb.RejectFixRequest, context: Context) -> pb.SuggestedFix:
        return await self._decide(request.name, "rejected", convert.reject_reason(request))

    # --- dead letters ------------------------------------------------------------

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        paging = rpcs.paging(request, {"dead_letters": True})
        rows = await self._dead_letters.page(rpcs.account(), after=paging.after, limit=paging.fetch)
        shown, token = paging.page(rows, key=lambda r: r.dead_time.isoformat())
        return pb.ListDeadLettersResponse(
            dead_letters=[convert.dead_letter(r) for r in shown], next_page_token=token
        )

    async def RetryDeadLetter(self, request: pb.RetryDeadLetterRequest, context: Context) -> pb.DeadLetter:
        letter = await self._dead_letters.retry(rpcs.account(), dead_letter_id(request.name), request.name)
        return convert.dead_letter(letter)

    # --- handoff ----------------------------------------------------------------------

    async def ClaimSession(self, request: pb.ClaimSessionRequest, context: Context) -> pb.Session:
        sid = session_id(request.name)
        etag = ids.parse_etag(request.etag, field="etag")
        return convert.session(await self._lifecycle.claim(current_principal(), sid, etag))

    async def AssignSession(self, request: pb.AssignSessionRequest, context: Context) -> pb.Session:
        sid = session_id(request.name)
        assignment = convert.assignment(request)
        etag = ids.parse_etag(request.etag, field="etag")
        return convert.session(await self._lifecycle.assign(current_principal(), sid, assignment, etag))

    # --- notes and packages ---------------------------------------------------------

    async def ListNoteRevisions(
        self, request: pb.ListNoteRevisionsRequest, context: Context
    ) -> pb.ListNoteRevisionsResponse:
        sid = session_id(request.parent, field="parent")
        kind = convert.note_kind_filter(request)
        paging = rpcs.paging(request, {"session": str(sid), "kind": kind.value if kind else None})
        rows = await self._notes.revisions(
            rpcs.account(), sid, kind=kind, after=paging.after, limit=paging.fetch
        )
        revisions = convert.within_budget(
            [convert.note_revision(r) for r in rows[: paging.limit]], paging.limit
        )
        token = paging.token_after(rows, len(revisions), key=lambda r: r.post_time.isoformat())
        return pb.ListNoteRevisionsResponse(note_revisions=revisions, next_page_token=token)

    async def _preview(self, name: str, kind: NoteKind) -> pb.NotePreview:
        preview, cached = await self._notes.preview(rpcs.account(), session_id(name), kind)
        return convert.note_preview(preview, cached=cached)

    async def PreviewResolutionNote(
        self, request: pb.PreviewResolutionNoteRequest, context: Context
    ) -> pb.NotePreview:
        return await self._preview(request.name, NoteKind.RESOLUTION_NOTE)

    async def PreviewEscalationPackage(
        self, request: pb.PreviewEscalationPackageRequest, context: Context
    ) -> pb.NotePreview:
        return await self._preview(request.name, NoteKind.ESCALATION_PACKAGE)

    async def _post(self, name: str, external_id: str, kind: NoteKind) -> pb.Session:
        external_id = validation.nonblank(external_id, "external_id").strip()
        return convert.session(
            await self._notes.post(current_principal(), session_id(name), kind, external_id)
        )

    async def PostResolutionNote(self, request: pb.PostResolutionNoteRequest, context: Context) -> pb.Session:
        return await self._post(request.name, request.external_id, NoteKind.RESOLUTION_NOTE)

    async def PostEscalationPackage(
        self, request: pb.PostEscalationPackageRequest, context: Context
    ) -> pb.Session:
        return await self._post(request.name, request.external_id, NoteKind.ESCALATION_PACKAGE)
