"""A session's task lane: checks, scripts, questions and actions, stored in
the session row (JSONB), each with its own id and status.

The rules (what a script item carries, how many items and how much content a
lane holds) are plain functions; :class:`Lane` applies them to a session
locked for the change, which bumps its state version (the lane is part of
what the resolution note says).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypedDict

from services.core.auth import Principal
from services.core.db import Database
from services.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, found
from services.sessions import lifecycle, storage
from services.sessions.rows import LaneItem

MAX_LANE_ITEMS = 200
# A session's task lane holds at most this much detail, script and output.
MAX_LANE_BYTES = 8 * 1024 * 1024


class Changes(TypedDict, total=False):
    """What an update may change of a lane item."""

    status: str
    output: str
    title: str
    detail: str


def content_bytes(item: LaneItem) -> int:
    """The size of a lane item's detail, script and output (UTF-8)."""
    return (
        len(item.get("detail", "").encode())
        + len(item.get("script_body", "").encode())
        + len(item.get("output", "").encode())
    )


def has_content(item: LaneItem) -> bool:
    return bool(item.get("detail") or item.get("script_body") or item.get("output"))


def check_script(kind: str, *, has_body: bool, has_language: bool) -> None:
    """Only script items carry a script, and a script says its language."""
    if (has_body or has_language) and kind != "script":
        raise InvalidArgument(FieldViolation("lane_item.script_body", "only script items carry a script"))
    if kind == "script" and has_body and not has_language:
        raise InvalidArgument(FieldViolation("lane_item.script_language", "is required with a script body"))


def check_room(lane: list[LaneItem]) -> None:
    """A lane takes one more item only below :data:`MAX_LANE_ITEMS`."""
    if len(lane) >= MAX_LANE_ITEMS:
        raise FailedPrecondition(f"the task lane holds at most {MAX_LANE_ITEMS} items", reason="LANE_FULL")


def check_size(lane: list[LaneItem]) -> None:
    if sum(content_bytes(item) for item in lane) > MAX_LANE_BYTES:
        raise FailedPrecondition(
            f"the task lane holds at most {MAX_LANE_BYTES // (1024 * 1024)} MiB of detail, scripts and output",
            reason="LANE_FULL",
        )


def find(lane: list[LaneItem], item_id: str) -> LaneItem | None:
    return next((item for item in lane if item["id"] == item_id), None)


def changed(
    lane: list[LaneItem], item_id: str, changes: Changes, now: str
) -> tuple[list[LaneItem], LaneItem] | None:
    """(a copy of the lane with the item changed, the changed item); None when
    the lane has no such item."""
    copy = [item.copy() for item in lane]
    item = find(copy, item_id)
    if item is None:
        return None
    for key, value in changes.items():
        item[key] = value  # type: ignore[literal-required]  # Changes' keys are LaneItem's
    item["update_time"] = now
    return copy, item


class Lane:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def get(self, account: uuid.UUID, session_id: uuid.UUID, item_id: str, name: str) -> LaneItem:
        row = await storage.read_session(self._db, account, session_id)
        return found(find(row.pending_task_lane, item_id) if row else None, "lane item", name)

    async def add(self, principal: Principal, session_id: uuid.UUID, item: LaneItem) -> None:
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find_writable(conn, session_id, principal)
            check_room(row.pending_task_lane)
            lane = [*row.pending_task_lane, item]
            check_size(lane)
            await storage.update_session(conn, session_id, lane=lane)

    async def update(
        self, principal: Principal, session_id: uuid.UUID, item_id: str, name: str, changes: Changes
    ) -> LaneItem:
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id, lock=True)
            changes_at = self._clock().isoformat()
            lane, item = found(
                changed(row.pending_task_lane, item_id, changes, changes_at), "lane item", name
            )
            lifecycle.require_writable(row, principal)
            check_size(lane)
            await storage.update_session(conn, session_id, lane=lane)
        return item
