"""Scripts that worked, sent to the library as draft templates when their
session resolves.

One outbox row per script (each message stays small), written in the
resolve's transaction, keyed by (session, lane item) so that it is recorded
once; :mod:`services.sessions.outbox` delivers it later. The payload is built
here, and read back there.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.core.auth import Principal
from services.sessions import outbox_storage
from services.sessions.outbox import TOPIC_LIBRARY_DRAFTS, trace_carrier
from services.sessions.resources import lane_item_name, session_name
from services.sessions.rows import LaneItem, Session
from services.sessions.storage import Connection


def drafted(session: Session) -> list[LaneItem]:
    """The lane's scripts that ran and worked: done, with a body and a language."""
    return [
        item
        for item in session.pending_task_lane
        if item["kind"] == "script"
        and item["status"] == "done"
        and item.get("script_body")
        and item.get("script_language")
    ]


def dedupe_key(session: Session, item: LaneItem) -> str:
    return f"{session.id}/{item['id']}"


def payload(session: Session, item: LaneItem, resolved_by: Principal) -> dict[str, Any]:
    """The library's ImportSessionScripts request for one script, as JSON."""
    return {
        "session": session_name(session.id),
        "resolved_by": str(resolved_by.user_id),
        "resolved_by_display_name": resolved_by.display_name,
        "ticket_ref": session.ticket_ref,
        "scripts": [
            {
                "lane_item": lane_item_name(session.id, item["id"]),
                "script_body": item["script_body"],
                "language": item["script_language"],
                "title": item["title"],
            }
        ],
    }


async def queue(conn: Connection, session: Session, principal: Principal) -> bool:
    """Records, in the resolve's transaction ``conn``, each of the session's
    working scripts for the library; True when there was any."""
    items = drafted(session)
    for item in items:
        await outbox_storage.insert_outbox(
            conn,
            account_id=principal.account_id,
            id=uuid.uuid4(),
            topic=TOPIC_LIBRARY_DRAFTS,
            dedupe_key=dedupe_key(session, item),
            payload=payload(session, item, principal),
            trace=trace_carrier(),
        )
    return bool(items)
