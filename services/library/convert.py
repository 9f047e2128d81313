"""Rows ↔ protobuf messages for the library, names, enums, and the provenance chip."""

from __future__ import annotations

import uuid
from typing import Any

from flowpilot.library.v1 import library_pb2 as pb

from services.core import names
from services.core.enums import EnumMap
from services.core.messages import set_time

TEMPLATE = "scriptTemplates/{script_template}"
DRAFT = "draftTemplates/{draft_template}"
SESSION = "sessions/{session}"
LANE_ITEM = "sessions/{session}/laneItems/{lane_item}"

LANGUAGE = EnumMap(
    pb.Language,
    {
        "powershell": pb.LANGUAGE_POWERSHELL,
        "bash": pb.LANGUAGE_BASH,
        "python": pb.LANGUAGE_PYTHON,
        "cmd": pb.LANGUAGE_CMD,
    },
    field="language",
)
DRAFT_STATUS = EnumMap(
    pb.DraftStatus,
    {
        "pending": pb.DRAFT_STATUS_PENDING,
        "approved": pb.DRAFT_STATUS_APPROVED,
        "rejected": pb.DRAFT_STATUS_REJECTED,
    },
    field="status",
)


def template_id(name: str, field: str = "name") -> uuid.UUID:
    return names.parse_id(name, TEMPLATE, field=field)


def draft_id(name: str, field: str = "name") -> uuid.UUID:
    return names.parse_id(name, DRAFT, field=field)


def parameters(raw: list[dict[str, Any]] | None) -> list[pb.Parameter]:
    return [
        pb.Parameter(
            name=p["name"],
            description=p.get("description", ""),
            required=p.get("required", True),
            default=p.get("default", ""),
            secret=p.get("secret", False),
        )
        for p in raw or []
    ]


def provenance(row: Any, *, lane_item: bool = False) -> pb.Provenance:
    session = row.source_session_id
    message = pb.Provenance(
        session=names.format_name(SESSION, session=session) if session else "",
        user=str(row.source_user_id) if row.source_user_id else "",
        user_display_name=row.source_user_name or "",
        ticket_ref=row.source_ticket_ref or "",
    )
    if lane_item and session and row.source_lane_item_id:
        message.lane_item = names.format_name(LANE_ITEM, session=session, lane_item=row.source_lane_item_id)
    return message


def provenance_summary(row: Any) -> str:
    """The chip: "generated from CW #X · resolved by Y · used N times"."""
    parts = []
    if row.source_ticket_ref:
        parts.append(f"generated from {row.source_ticket_ref}")
    if row.source_user_id:
        parts.append(f"resolved by {row.source_user_name or row.source_user_id}")
    uses = row.usage_count
    parts.append(f"used {uses} time{'s' if uses != 1 else ''}")
    return " · ".join(parts)


def template(row: Any) -> pb.ScriptTemplate:
    message = pb.ScriptTemplate(
        name=names.format_name(TEMPLATE, script_template=row.id),
        display_name=row.name,
        description=row.description,
        language=LANGUAGE.proto(row.language),
        body=row.body,
        parameters=parameters(row.parameters),
        tags=list(row.tags),
        usage_count=row.usage_count,
        provenance=provenance(row),
        provenance_summary=provenance_summary(row),
        creator=str(row.created_by),
        etag=str(row.revision),
    )
    set_time(message, "last_use_time", row.last_use_time)
    set_time(message, "create_time", row.create_time)
    set_time(message, "update_time", row.update_time)
    return message


def draft(row: Any) -> pb.DraftTemplate:
    message = pb.DraftTemplate(
        name=names.format_name(DRAFT, draft_template=row.id),
        script_body=row.script_body,
        language=LANGUAGE.proto(row.language),
        suggested_name=row.suggested_name,
        templatized_body=row.templatized_body or "",
        parameters=parameters(row.parameters),
        status=DRAFT_STATUS.proto(row.status),
        reviewer=str(row.reviewer_id) if row.reviewer_id else "",
        review_note=row.review_note or "",
        script_template=names.format_name(TEMPLATE, script_template=row.template_id)
        if row.template_id
        else "",
        provenance=provenance(row, lane_item=True),
        redactions=[
            pb.Redaction(parameter=r["parameter"], kind=r["kind"], line=r["line"]) for r in row.redactions
        ],
    )
    set_time(message, "review_time", row.review_time)
    set_time(message, "create_time", row.create_time)
    return message
