"""Rows and JSON lane items ↔ protobuf messages, names, and enum values."""

from __future__ import annotations

import uuid
from typing import Any

from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core import ids, names
from services.core.ai import LaneView
from services.core.errors import FieldViolation, InvalidArgument
from services.core.messages import set_time

SESSION = "sessions/{session}"
FACT = "sessions/{session}/facts/{fact}"
FIX = "sessions/{session}/fixes/{fix}"
LANE_ITEM = "sessions/{session}/laneItems/{lane_item}"
DEAD_LETTER = "deadLetters/{dead_letter}"


class Enum:
    """A two-way map between stored strings and proto enum numbers."""

    def __init__(self, field: str, mapping: dict[str, int]) -> None:
        self.field = field
        self.to_proto = mapping
        self.to_db = {v: k for k, v in mapping.items()}

    def db(self, value: int, *, field: str | None = None) -> str:
        try:
            return self.to_db[value]
        except KeyError:
            raise InvalidArgument(FieldViolation(field or self.field, "is not a valid value")) from None

    def proto(self, value: str) -> Any:
        return self.to_proto[value]


TICKET_KIND = Enum("ticket_kind", {"psa": pb.TICKET_KIND_PSA, "internal": pb.TICKET_KIND_INTERNAL})
SESSION_STATUS = Enum(
    "status",
    {
        "active": pb.SESSION_STATUS_ACTIVE,
        "resolved": pb.SESSION_STATUS_RESOLVED,
        "escalated": pb.SESSION_STATUS_ESCALATED,
        "abandoned": pb.SESSION_STATUS_ABANDONED,
    },
)
LANE_KIND = Enum(
    "kind",
    {
        "check": pb.LANE_ITEM_KIND_CHECK,
        "script": pb.LANE_ITEM_KIND_SCRIPT,
        "question": pb.LANE_ITEM_KIND_QUESTION,
        "action": pb.LANE_ITEM_KIND_ACTION,
    },
)
LANE_STATUS = Enum(
    "status",
    {
        "pending": pb.LANE_ITEM_STATUS_PENDING,
        "done": pb.LANE_ITEM_STATUS_DONE,
        "skipped": pb.LANE_ITEM_STATUS_SKIPPED,
        "failed": pb.LANE_ITEM_STATUS_FAILED,
    },
)
LANGUAGE = Enum(
    "script_language",
    {
        "": pb.SCRIPT_LANGUAGE_UNSPECIFIED,
        "powershell": pb.SCRIPT_LANGUAGE_POWERSHELL,
        "bash": pb.SCRIPT_LANGUAGE_BASH,
        "python": pb.SCRIPT_LANGUAGE_PYTHON,
        "cmd": pb.SCRIPT_LANGUAGE_CMD,
    },
)
FACT_SOURCE = Enum(
    "source", {"user": pb.FACT_SOURCE_USER, "ai": pb.FACT_SOURCE_AI, "task_lane": pb.FACT_SOURCE_TASK_LANE}
)
FIX_STATUS = Enum(
    "status",
    {
        "proposed": pb.FIX_STATUS_PROPOSED,
        "accepted": pb.FIX_STATUS_ACCEPTED,
        "rejected": pb.FIX_STATUS_REJECTED,
    },
)


def parse_id(value: str, *, field: str, kind: str) -> uuid.UUID:
    return ids.parse_uuid(value, field=field, what=f"{kind} id")


def session_id(name: str, *, field: str = "name") -> uuid.UUID:
    return parse_id(names.parse(name, SESSION, field=field)["session"], field=field, kind="session")


def child_ids(name: str, pattern: str, child: str, *, field: str = "name") -> tuple[uuid.UUID, str]:
    parts = names.parse(name, pattern, field=field)
    return parse_id(parts["session"], field=field, kind="session"), parts[child]


# A response carries at most this much: lane content (detail, script, output)
# of a session read, and sessions of a list page. Whatever the API accepted
# fits under the 4 MiB message limit this way (one lane item whole is at most
# ~0.5 MiB, read with GetLaneItem).
RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024
_CONTENT = ("detail", "script_body", "output")


def lane_content_bytes(item: dict[str, Any]) -> int:
    """The size of a lane item's detail, script and output (UTF-8)."""
    return sum(len(item.get(key, "").encode()) for key in _CONTENT)


class Budget:
    """Bytes a response may still spend on lane content."""

    def __init__(self, left: int = RESPONSE_BUDGET_BYTES) -> None:
        self.left = left

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


def lane_item(session: uuid.UUID, item: dict[str, Any], *, whole: bool = True) -> pb.LaneItem:
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
        message.content_omitted = bool(item.get("has_content")) or any(item.get(key) for key in _CONTENT)
    set_time(message, "create_time", item.get("create_time"))
    set_time(message, "update_time", item.get("update_time"))
    return message


def lane_view(item: dict[str, Any]) -> LaneView:
    return LaneView(
        kind=item["kind"],
        title=item["title"],
        status=item["status"],
        detail=item.get("detail", ""),
        output=item.get("output", ""),
        script_body=item.get("script_body", ""),
        script_language=item.get("script_language", ""),
    )


def _document(row: Any, prefix: str) -> pb.PostedDocument | None:
    posted = getattr(row, f"{prefix}_posted_at")
    if posted is None:
        return None
    version = getattr(row, f"{prefix}_state_version") or 0
    document = pb.PostedDocument(
        markdown=getattr(row, f"{prefix}_markdown") or "",
        external_id=getattr(row, f"{prefix}_external_id") or "",
        state_version=version,
        stale=row.state_version > version,
    )
    set_time(document, "post_time", posted)
    return document


def session(row: Any, *, view: int = pb.SESSION_VIEW_FULL, budget: Budget | None = None) -> pb.Session:
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
            lane_item(row.id, item, whole=full and budget.take(lane_content_bytes(item)))
            for item in row.pending_task_lane
        ],
        resolution_summary=row.resolution_summary or "",
        escalation_reason=row.escalation_reason or "",
        state_version=row.state_version,
        etag=str(row.state_version),
    )
    for prefix, field in (
        ("resolution_note", "resolution_note"),
        ("escalation_package", "escalation_package"),
    ):
        document = _document(row, prefix)
        if document is not None:
            getattr(message, field).CopyFrom(document)
    set_time(message, "create_time", row.create_time)
    set_time(message, "update_time", row.update_time)
    set_time(message, "end_time", row.end_time)
    return message


def fact(row: Any) -> pb.Fact:
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
    set_time(message, "delete_time", row.deleted_at)
    return message


def fix(row: Any) -> pb.SuggestedFix:
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
        active=row.superseded_at is None,
    )
    set_time(message, "supersede_time", row.superseded_at)
    set_time(message, "create_time", row.create_time)
    set_time(message, "decide_time", row.decide_time)
    return message


def dead_letter(row: Any) -> pb.DeadLetter:
    message = pb.DeadLetter(
        name=names.format_name(DEAD_LETTER, dead_letter=row.id),
        topic=row.topic,
        session=row.session or "",
        attempts=row.attempts,
        last_error=row.last_error or "",
    )
    set_time(message, "create_time", row.create_time)
    set_time(message, "dead_time", row.dead_at)
    return message
