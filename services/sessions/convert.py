"""Typed rows and lane items ↔ protobuf messages, and enum values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from flowpilot.sessions.v1 import sessions_pb2 as pb
from google.protobuf.message import Message as ProtoMessage

from services.core import auth, ids, names, validation
from services.core.ai import ProposalDraft
from services.core.enums import TICKET_KIND, EnumMap
from services.core.errors import FieldViolation, InvalidArgument
from services.core.messages import set_time
from services.sessions import facts, lane, lifecycle, usage
from services.sessions.handoff import Assignment
from services.sessions.lifecycle import NewSession
from services.sessions.resources import (
    DEAD_LETTER,
    FACT,
    FIX,
    LANE_ITEM,
    MESSAGE,
    NOTE_REVISION,
    PROPOSAL,
    SESSION,
    WALK,
    child_ids,
    session_id,
)
from services.sessions.rows import (
    AiUsage,
    DeadLetter,
    Fact,
    Fix,
    LaneItem,
    Message,
    NoteKind,
    NoteRevision,
    Posting,
    Preview,
    Proposal,
    Session,
)

SESSION_STATUS = EnumMap(
    pb.SessionStatus,
    {
        "active": pb.SESSION_STATUS_ACTIVE,
        "resolved": pb.SESSION_STATUS_RESOLVED,
        "escalated": pb.SESSION_STATUS_ESCALATED,
        "abandoned": pb.SESSION_STATUS_ABANDONED,
    },
    field="status",
)
LANE_KIND = EnumMap(
    pb.LaneItemKind,
    {
        "check": pb.LANE_ITEM_KIND_CHECK,
        "script": pb.LANE_ITEM_KIND_SCRIPT,
        "question": pb.LANE_ITEM_KIND_QUESTION,
        "action": pb.LANE_ITEM_KIND_ACTION,
    },
    field="kind",
)
LANE_STATUS = EnumMap(
    pb.LaneItemStatus,
    {
        "pending": pb.LANE_ITEM_STATUS_PENDING,
        "done": pb.LANE_ITEM_STATUS_DONE,
        "skipped": pb.LANE_ITEM_STATUS_SKIPPED,
        "failed": pb.LANE_ITEM_STATUS_FAILED,
    },
    field="status",
)
LANGUAGE = EnumMap(
    pb.ScriptLanguage,
    {
        "": pb.SCRIPT_LANGUAGE_UNSPECIFIED,
        "powershell": pb.SCRIPT_LANGUAGE_POWERSHELL,
        "bash": pb.SCRIPT_LANGUAGE_BASH,
        "python": pb.SCRIPT_LANGUAGE_PYTHON,
        "cmd": pb.SCRIPT_LANGUAGE_CMD,
    },
    field="script_language",
)
FACT_SOURCE = EnumMap(
    pb.FactSource,
    {"user": pb.FACT_SOURCE_USER, "ai": pb.FACT_SOURCE_AI, "task_lane": pb.FACT_SOURCE_TASK_LANE},
    field="source",
)
FIX_STATUS = EnumMap(
    pb.FixStatus,
    {
        "proposed": pb.FIX_STATUS_PROPOSED,
        "accepted": pb.FIX_STATUS_ACCEPTED,
        "rejected": pb.FIX_STATUS_REJECTED,
    },
    field="status",
)


# A response carries at most this much: lane content (detail, script, output)
# of a session read, and sessions of a list page. Whatever the API accepted
# fits under the 4 MiB message limit this way (one lane item whole is at most
# ~0.5 MiB, read with GetLaneItem).
RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024
M = TypeVar("M", bound=ProtoMessage)


class Budget:
    """Bytes a response may still spend on lane content."""

    def __init__(self, left: int = RESPONSE_BUDGET_BYTES) -> None:
        self.left = left

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


# --- proto → domain -------------------------------------------------------------


def new_session(request: pb.CreateSessionRequest, *, fingerprint: Callable[[], str]) -> NewSession:
    """A CreateSession request, checked in field order; ``fingerprint`` (of
    the caller and request) is taken once the request is known to be valid."""
    given = request.session
    ticket_ref = validation.nonblank(given.ticket_ref, "session.ticket_ref").strip()
    title = validation.nonblank(given.title, "session.title").strip()
    kind = TICKET_KIND.db(given.ticket_kind, field="session.ticket_kind")
    request_id = None
    if request.request_id:
        request_id = ids.parse_uuid(request.request_id, field="request_id", what="request id (UUID) id")
    facts = [
        (
            validation.nonblank(fact.text, f"facts[{i}].text"),
            FACT_SOURCE.db(fact.source or pb.FACT_SOURCE_USER, field=f"facts[{i}].source"),
        )
        for i, fact in enumerate(request.facts)
    ]
    lifecycle.check_first_facts(facts)
    return NewSession(
        ticket_ref=ticket_ref,
        ticket_kind=kind,
        title=title,
        problem=given.problem,
        facts=facts,
        force_new=request.force_new,
        request_id=request_id,
        fingerprint=fingerprint(),
        escalated_walk=escalated_walk(request),
    )


def escalated_walk(request: pb.CreateSessionRequest) -> uuid.UUID | None:
    """The walk an escalation names (None: not an escalation): ``walks/{uuid}``,
    sent with a request id (the walks service retries an escalation under one)."""
    if not request.escalated_walk:
        return None
    walk = names.parse_id(request.escalated_walk, WALK, field="escalated_walk")
    if not request.request_id:
        raise InvalidArgument(
            FieldViolation("request_id", "is required with escalated_walk (retries send the same one)")
        )
    return walk


def assignee_filter(request: pb.ListSessionsRequest, *, me: uuid.UUID) -> uuid.UUID | None:
    """The assignee a ListSessions request asks for (``me``: the caller), or None."""
    if not request.assignee:
        return None
    if request.unassigned:
        raise InvalidArgument(FieldViolation("unassigned", "cannot be combined with assignee"))
    if request.assignee == "me":
        return me
    return ids.parse_uuid(request.assignee, field="assignee", what="user id or `me`")


def assignment(request: pb.AssignSessionRequest) -> Assignment:
    """Whom an AssignSession request assigns (empty: nobody), and the display
    name given for them (control characters dropped, spaces trimmed)."""
    name = auth.display_name(request.assignee_display_name) or None
    if not request.assignee:
        if name is not None:
            raise InvalidArgument(
                FieldViolation("assignee_display_name", "is only for an assignee (empty assignee unassigns)")
            )
        return Assignment(user=None)
    return Assignment(user=ids.parse_uuid(request.assignee, field="assignee", what="user id"), name=name)


def session_edit(request: pb.UpdateSessionRequest) -> tuple[uuid.UUID, lifecycle.Edit]:
    """(the session, what changes of it) from an UpdateSession request."""
    given = request.session
    sid = session_id(given.name, field="session.name")
    paths = validation.update_paths(
        given,
        request.update_mask.paths,
        allowed={"title", "problem"},
        default={"title", "problem"},
        prefix="session",
    )
    return sid, lifecycle.Edit(
        title=validation.nonblank(given.title, "session.title").strip() if "title" in paths else None,
        problem=given.problem if "problem" in paths else None,
        etag=ids.parse_etag(given.etag, field="session.etag"),
    )


def new_fact(session: uuid.UUID, given: pb.Fact) -> facts.NewFact:
    """A new fact of ``session`` from a CreateFact request."""
    text = validation.nonblank(given.text, "fact.text")
    source = FACT_SOURCE.db(given.source, field="fact.source")
    ref = lane_ref(session, given.source_ref, "fact.source_ref")
    facts.require_ref(source, ref, "fact.source_ref")
    return facts.NewFact(text=text, source=source, source_ref=ref)


def fact_edit(request: pb.UpdateFactRequest) -> tuple[uuid.UUID, facts.Edit]:
    """(the fact's session, what changes of the fact) from an UpdateFact request."""
    given = request.fact
    paths = validation.update_paths(
        given, request.update_mask.paths, allowed={"text", "source_ref"}, default={"text"}, prefix="fact"
    )
    sid, _ = child_ids(given.name, FACT, "fact", field="fact.name")
    return sid, facts.Edit(
        text=validation.nonblank(given.text, "fact.text") if "text" in paths else None,
        change_source_ref="source_ref" in paths,
        source_ref=lane_ref(sid, given.source_ref, "fact.source_ref") if "source_ref" in paths else None,
    )


def new_lane_item(given: pb.LaneItem, *, item_id: str, now: str) -> LaneItem:
    """A new lane item from a CreateLaneItem request (its fields checked in this order)."""
    kind = LANE_KIND.db(given.kind, field="lane_item.kind")
    lane.check_script(kind, has_body=bool(given.script_body), has_language=bool(given.script_language))
    return {
        "id": item_id,
        "kind": kind,
        "title": validation.nonblank(given.title, "lane_item.title").strip(),
        "detail": given.detail,
        "script_body": given.script_body,
        "script_language": LANGUAGE.db(given.script_language, field="lane_item.script_language"),
        "status": LANE_STATUS.db(given.status, field="lane_item.status") if given.status else "pending",
        "output": given.output,
        "create_time": now,
        "update_time": now,
    }


def lane_changes(given: pb.LaneItem, paths: set[str]) -> lane.Changes:
    """The fields an UpdateLaneItem request changes (``paths``, already checked)."""
    changes: lane.Changes = {}
    if "status" in paths:
        changes["status"] = LANE_STATUS.db(given.status, field="lane_item.status")
    if "output" in paths:
        changes["output"] = given.output
    if "title" in paths:
        changes["title"] = validation.nonblank(given.title, "lane_item.title").strip()
    if "detail" in paths:
        changes["detail"] = given.detail
    return changes


def lane_ref(session: uuid.UUID, value: str, field: str) -> str | None:
    """The lane item id a fact's ``source_ref`` names (None when empty); it
    must be an item of the fact's own session."""
    if not value:
        return None
    ref_session, item_id = child_ids(value, LANE_ITEM, "lane_item", field=field)
    if ref_session != session:
        raise InvalidArgument(FieldViolation(field, "must name a task-lane item of the same session"))
    return item_id


# --- domain → proto -------------------------------------------------------------


def lane_item(session: uuid.UUID, item: LaneItem, *, whole: bool = True) -> pb.LaneItem:
    """A lane item; without ``whole``, its detail, script and output are left
    out (``content_omitted``)."""
    message = pb.LaneItem(
        name=names.format_name(LANE_ITEM, session=session, lane_item=item["id"]),
        kind=LANE_KIND.proto(item["kind"]),
        title=item["title"],
        script_language=LANGUAGE.proto(item.get("script_language", "")),
        status=LANE_STATUS.proto(item["status"]),
    )
    if whole:
        message.detail = item.get("detail", "")
        message.script_body = item.get("script_body", "")
        message.output = item.get("output", "")
    else:
        # A lane read without its content says whether it had any.
        message.content_omitted = bool(item.get("has_content")) or lane.has_content(item)
    set_time(message, "create_time", item.get("create_time"))
    set_time(message, "update_time", item.get("update_time"))
    return message


def _document(posting: Posting, state_version: int) -> pb.PostedDocument | None:
    if posting.post_time is None:
        return None
    version = posting.state_version or 0
    document = pb.PostedDocument(
        markdown=posting.markdown or "",
        external_id=posting.external_id or "",
        state_version=version,
        stale=state_version > version,
        revision=posting.revision or 0,
        poster=str(posting.posted_by or ""),
        poster_display_name=posting.posted_by_name or "",
    )
    set_time(document, "post_time", posting.post_time)
    return document


def session(row: Session, *, view: int = pb.SESSION_VIEW_FULL, budget: Budget | None = None) -> pb.Session:
    """A session: its lane items whole in the FULL view, as long as ``budget``
    (by default a response's) lasts, in lane order; in the BASIC view, never."""
    budget = budget or Budget()
    full = view != pb.SESSION_VIEW_BASIC
    message = pb.Session(
        name=names.format_name(SESSION, session=row.id),
        ticket_ref=row.ticket_ref,
        ticket_kind=TICKET_KIND.proto(row.ticket_kind),
        title=row.title,
        problem=row.problem,
        status=SESSION_STATUS.proto(row.status),
        creator=str(row.created_by),
        lane_items=[
            lane_item(row.id, item, whole=full and budget.take(lane.content_bytes(item)))
            for item in row.pending_task_lane
        ],
        resolution_summary=row.resolution_summary or "",
        escalation_reason=row.escalation_reason or "",
        state_version=row.state_version,
        etag=str(row.state_version),
        creator_display_name=row.created_by_name or "",
        assignee=str(row.assignee or ""),
        assignee_display_name=row.assignee_name or "",
        escalated_walk=names.format_name(WALK, walk=row.escalated_walk_id) if row.escalated_walk_id else "",
        closer=str(row.closed_by or ""),
        closer_display_name=row.closed_by_name or "",
        abandon_reason=row.abandon_reason or "",
    )
    resolution_note = _document(row.resolution_note, row.state_version)
    if resolution_note is not None:
        message.resolution_note.CopyFrom(resolution_note)
    escalation_package = _document(row.escalation_package, row.state_version)
    if escalation_package is not None:
        message.escalation_package.CopyFrom(escalation_package)
    set_time(message, "create_time", row.create_time)
    set_time(message, "update_time", row.update_time)
    set_time(message, "end_time", row.end_time)
    return message


def within_budget(messages: Sequence[M], limit: int) -> list[M]:
    """The first of up to ``limit`` encoded rows that fit the response budget
    (always at least one): a page ends early rather than pass it."""
    page: list[M] = []
    size = 0
    for message in messages[:limit]:
        size += message.ByteSize()
        if page and size > RESPONSE_BUDGET_BYTES:
            break
        page.append(message)
    return page


def session_page(rows: Sequence[Session], limit: int, *, full: bool) -> list[pb.Session]:
    """Up to ``limit`` sessions of a list page: the page ends early rather than
    grow past the response budget."""
    sessions: list[pb.Session] = []
    size = 0
    for row in rows[:limit]:
        message = session(
            row,
            view=pb.SESSION_VIEW_FULL if full else pb.SESSION_VIEW_BASIC,
            budget=Budget(RESPONSE_BUDGET_BYTES - size),
        )
        # A FULL page also ends before a session whose lane no longer fits
        # whole: it starts the next page, with the whole budget.
        if sessions and (
            size + message.ByteSize() > RESPONSE_BUDGET_BYTES
            or (full and any(item.content_omitted for item in message.lane_items))
        ):
            break
        sessions.append(message)
        size += message.ByteSize()
    return sessions


def fact(row: Fact) -> pb.Fact:
    message = pb.Fact(
        name=names.format_name(FACT, session=row.session_id, fact=row.id),
        text=row.text,
        source=FACT_SOURCE.proto(row.source),
        source_ref=names.format_name(LANE_ITEM, session=row.session_id, lane_item=row.source_ref)
        if row.source_ref
        else "",
        creator=str(row.created_by),
    )
    set_time(message, "create_time", row.create_time)
    set_time(message, "update_time", row.update_time)
    set_time(message, "delete_time", row.delete_time)
    return message


def fix(row: Fix) -> pb.SuggestedFix:
    message = pb.SuggestedFix(
        name=names.format_name(FIX, session=row.session_id, fix=row.id),
        title=row.title,
        summary_markdown=row.summary_markdown,
        steps=list(row.steps),
        confidence=row.confidence,
        rationale=row.rationale,
        model=row.model,
        state_version=row.state_version,
        status=FIX_STATUS.proto(row.status),
        active=row.supersede_time is None,
        decider=str(row.decided_by or ""),
        decider_display_name=row.decided_by_name or "",
        reject_reason=row.reject_reason or "",
    )
    set_time(message, "supersede_time", row.supersede_time)
    set_time(message, "create_time", row.create_time)
    set_time(message, "decide_time", row.decide_time)
    return message


def reject_reason(request: pb.RejectFixRequest) -> str | None:
    """Why a fix was ruled out; None when not given (blank is none)."""
    return request.reason.strip() or None


NOTE_KIND = EnumMap(
    pb.NoteKind,
    {
        NoteKind.RESOLUTION_NOTE.value: pb.NOTE_KIND_RESOLUTION_NOTE,
        NoteKind.ESCALATION_PACKAGE.value: pb.NOTE_KIND_ESCALATION_PACKAGE,
    },
    field="kind",
)


def note_kind_filter(request: pb.ListNoteRevisionsRequest) -> NoteKind | None:
    stored = NOTE_KIND.optional(request.kind)
    return None if stored is None else NoteKind(stored)


def note_revision(row: NoteRevision) -> pb.NoteRevision:
    message = pb.NoteRevision(
        name=names.format_name(NOTE_REVISION, session=row.session_id, note_revision=row.id),
        kind=NOTE_KIND.proto(row.kind.value),
        revision=row.revision,
        text=row.text,
        format=row.format,
        state_version=row.state_version,
        external_id=row.external_id,
        poster=str(row.posted_by),
        poster_display_name=row.posted_by_name or "",
    )
    if row.prompt_version is not None:
        message.prompt_version = row.prompt_version
    set_time(message, "post_time", row.post_time)
    return message


def dead_letter(row: DeadLetter) -> pb.DeadLetter:
    message = pb.DeadLetter(
        name=names.format_name(DEAD_LETTER, dead_letter=row.id),
        topic=row.topic,
        session=row.session or "",
        attempts=row.attempts,
        last_error=row.last_error or "",
    )
    set_time(message, "create_time", row.create_time)
    set_time(message, "dead_time", row.dead_time)
    return message


def note_preview(preview: Preview, *, cached: bool) -> pb.NotePreview:
    return pb.NotePreview(
        text=preview.text,
        format=preview.format,
        state_version=preview.state_version,
        cached=cached,
        model=preview.model,
    )


# --- the copilot conversation ---------------------------------------------------

MESSAGE_ROLE = EnumMap(
    pb.MessageRole, {"user": pb.MESSAGE_ROLE_USER, "assistant": pb.MESSAGE_ROLE_ASSISTANT}, field="role"
)
PROPOSAL_KIND = EnumMap(
    pb.ProposalKind,
    {"fact": pb.PROPOSAL_KIND_FACT, "lane_item": pb.PROPOSAL_KIND_LANE_ITEM, "fix": pb.PROPOSAL_KIND_FIX},
    field="kind",
)
PROPOSAL_STATE = EnumMap(
    pb.ProposalState,
    {
        "pending": pb.PROPOSAL_STATE_PENDING,
        "applied": pb.PROPOSAL_STATE_APPLIED,
        "dismissed": pb.PROPOSAL_STATE_DISMISSED,
    },
    field="state",
)
# ListMessages' order_by: oldest first (the default) or newest first.
MESSAGE_ORDERS = {"": False, "create_time": False, "create_time asc": False, "create_time desc": True}


def message_text(request: pb.SendMessageRequest) -> str:
    """The engineer's message (its length is the proto's max_size, checked by the runtime)."""
    return validation.nonblank(request.message.text, "message.text")


def newest_first(request: pb.ListMessagesRequest) -> bool:
    order = " ".join(request.order_by.lower().split())
    if order not in MESSAGE_ORDERS:
        raise InvalidArgument(FieldViolation("order_by", "must be `create_time` or `create_time desc`"))
    return MESSAGE_ORDERS[order]


def proposal(row: Proposal) -> pb.Proposal:
    given = row.payload
    message = pb.Proposal(
        name=names.format_name(PROPOSAL, session=row.session_id, message=row.message_id, proposal=row.id),
        kind=PROPOSAL_KIND.proto(row.kind),
        state=PROPOSAL_STATE.proto(row.state),
        title=given.get("text") or given.get("title", ""),
        detail=given.get("detail") or given.get("summary", ""),
        lane_item_kind=LANE_KIND.proto(given["lane_kind"])
        if "lane_kind" in given
        else pb.LANE_ITEM_KIND_UNSPECIFIED,
        steps=list(given.get("steps", [])),
        tool_call_id=row.tool_call_id,
        result=row.result or "",
        decider=str(row.decided_by or ""),
    )
    set_time(message, "decide_time", row.decide_time)
    return message


def message(row: Message) -> pb.Message:
    converted = pb.Message(
        name=names.format_name(MESSAGE, session=row.session_id, message=row.id),
        role=MESSAGE_ROLE.proto(row.role),
        text=row.text,
        proposals=[proposal(p) for p in row.proposals],
        model=row.model,
        tier=row.tier,
        prompt_version=row.prompt_version,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        author=str(row.author),
        author_display_name=row.author_name or "",
        partial=row.partial,
        state_version=row.state_version,
        citations=[pb.Citation(name=c.name, title=c.title) for c in row.citations],
    )
    set_time(converted, "create_time", row.create_time)
    return converted


def proposal_draft(draft: ProposalDraft) -> pb.Proposal:
    """A proposal as it streams, before it is stored (no name yet)."""
    return pb.Proposal(
        kind=PROPOSAL_KIND.proto(draft.kind),
        state=pb.PROPOSAL_STATE_PENDING,
        title=draft.title,
        detail=draft.detail,
        lane_item_kind=LANE_KIND.proto(draft.lane_kind)
        if draft.kind == "lane_item"
        else pb.LANE_ITEM_KIND_UNSPECIFIED,
        steps=list(draft.steps),
        tool_call_id=draft.tool_call_id,
    )


def ai_usage(row: AiUsage, budget: int) -> pb.AiUsage:
    converted = pb.AiUsage(
        name=usage.usage_name(row.month),
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        total_tokens=row.total_tokens,
        model_calls=row.model_calls,
        budget_tokens=budget,
        budget_spent=budget > 0 and row.total_tokens >= budget,
    )
    set_time(converted, "start_time", usage.month_start(row.month))
    set_time(converted, "reset_time", usage.reset_time(row.month))
    return converted
