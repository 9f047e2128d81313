"""Resource names of the sessions service: their patterns, and parsing a name
into the ids it holds (INVALID_ARGUMENT, on the given field, when it does not)."""

from __future__ import annotations

import uuid

from services.core import ids, names

SESSION = "sessions/{session}"
FACT = "sessions/{session}/facts/{fact}"
FIX = "sessions/{session}/fixes/{fix}"
LANE_ITEM = "sessions/{session}/laneItems/{lane_item}"
NOTE_REVISION = "sessions/{session}/noteRevisions/{note_revision}"
MESSAGE = "sessions/{session}/messages/{message}"
PROPOSAL = "sessions/{session}/messages/{message}/proposals/{proposal}"
DEAD_LETTER = "deadLetters/{dead_letter}"
# The walks service's walk (an escalated session records it; never read here).
WALK = "walks/{walk}"


def session_id(name: str, *, field: str = "name") -> uuid.UUID:
    return ids.parse_uuid(names.parse(name, SESSION, field=field)["session"], field=field, what="session id")


def child_ids(name: str, pattern: str, child: str, *, field: str = "name") -> tuple[uuid.UUID, str]:
    """(session id, the child's id as written) of a name under a session."""
    parts = names.parse(name, pattern, field=field)
    return ids.parse_uuid(parts["session"], field=field, what="session id"), parts[child]


def dead_letter_id(name: str) -> uuid.UUID:
    return ids.parse_uuid(names.parse(name, DEAD_LETTER)["dead_letter"], field="name", what="dead letter id")


def session_name(session: uuid.UUID) -> str:
    return names.format_name(SESSION, session=session)


def lane_item_name(session: uuid.UUID, item_id: str) -> str:
    return names.format_name(LANE_ITEM, session=session, lane_item=item_id)
