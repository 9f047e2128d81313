"""Typed rows built in memory, for the domain's rules (no database, no gRPC)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.sessions.rows import Fact, Fix, LaneItem, Posting, Session

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOT_POSTED = Posting(markdown=None, post_time=None, external_id=None, state_version=None)


def session(**changes: Any) -> Session:
    row = Session(
        id=uuid.UUID(int=1),
        ticket_ref="CW-1",
        ticket_kind="psa",
        title="VPN drops",
        problem="",
        status="active",
        created_by=uuid.UUID(int=2),
        request_fingerprint=None,
        pending_task_lane=[],
        resolution_summary=None,
        escalation_reason=None,
        resolution_note=NOT_POSTED,
        escalation_package=NOT_POSTED,
        state_version=3,
        create_time=NOW,
        update_time=NOW,
        end_time=None,
    )
    return replace(row, **changes)


def item(item_id: str = "a1", **changes: Any) -> LaneItem:
    base: LaneItem = {"id": item_id, "kind": "check", "title": "Ping the gateway", "status": "pending"}
    base.update(changes)  # type: ignore[typeddict-item]
    return base


def fact(**changes: Any) -> Fact:
    row = Fact(
        id=uuid.UUID(int=3),
        session_id=uuid.UUID(int=1),
        text="the tunnel drops every 10 minutes",
        source="user",
        source_ref=None,
        created_by=uuid.UUID(int=2),
        create_time=NOW,
        update_time=NOW,
        delete_time=None,
    )
    return replace(row, **changes)


def fix(**changes: Any) -> Fix:
    row = Fix(
        id=uuid.UUID(int=4),
        session_id=uuid.UUID(int=1),
        title="Raise the MTU",
        summary_markdown="Raise the MTU to 1400.",
        steps=["Set the MTU"],
        confidence=0.7,
        rationale="",
        model="offline",
        state_version=3,
        status="proposed",
        supersede_time=None,
        create_time=NOW,
        decide_time=None,
    )
    return replace(row, **changes)
