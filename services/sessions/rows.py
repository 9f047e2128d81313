"""Typed rows of the ``sessions`` schema: what storage returns and the domain
and ``convert`` read. Storage builds them; nothing else reads columns."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Required, TypedDict


class LaneItem(TypedDict, total=False):
    """One task-lane item as stored in ``ai_sessions.pending_task_lane`` (JSONB).
    Times are ISO-8601 text. ``has_content`` is only in lanes read without
    their content (a BASIC list)."""

    id: Required[str]
    kind: Required[str]  # check | script | question | action
    title: Required[str]
    status: Required[str]  # pending | done | skipped | failed
    detail: str
    script_body: str
    script_language: str
    output: str
    create_time: str
    update_time: str
    has_content: bool


class NoteKind(enum.Enum):
    """The documents a session posts to its ticket."""

    RESOLUTION_NOTE = "resolution_note"
    ESCALATION_PACKAGE = "escalation_package"


@dataclass(frozen=True, slots=True)
class Posting:
    """A posted resolution note or escalation package (all None until posted)."""

    markdown: str | None
    post_time: datetime | None
    external_id: str | None
    state_version: int | None
    revision: int | None = None  # of the latest post (note_revisions holds them all)
    posted_by: uuid.UUID | None = None
    posted_by_name: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    ticket_ref: str
    ticket_kind: str  # psa | internal
    title: str
    problem: str
    status: str  # active | resolved | escalated | abandoned
    created_by: uuid.UUID
    request_fingerprint: str | None
    pending_task_lane: list[LaneItem]
    resolution_summary: str | None
    escalation_reason: str | None
    resolution_note: Posting
    escalation_package: Posting
    state_version: int
    create_time: datetime
    update_time: datetime
    end_time: datetime | None
    # People: display names as the tokens gave them (None: the token had none).
    created_by_name: str | None = None
    assignee: uuid.UUID | None = None
    assignee_name: str | None = None
    closed_by: uuid.UUID | None = None
    closed_by_name: str | None = None
    escalated_walk_id: uuid.UUID | None = None
    # Why the service abandoned it (the stale-session sweep).
    abandon_reason: str | None = None

    def posting(self, kind: NoteKind) -> Posting:
        return self.resolution_note if kind is NoteKind.RESOLUTION_NOTE else self.escalation_package


@dataclass(frozen=True, slots=True)
class Fact:
    id: uuid.UUID
    session_id: uuid.UUID
    text: str
    source: str  # user | ai | task_lane
    source_ref: str | None  # a lane item id of the same session
    created_by: uuid.UUID
    create_time: datetime
    update_time: datetime
    delete_time: datetime | None


@dataclass(frozen=True, slots=True)
class Fix:
    id: uuid.UUID
    session_id: uuid.UUID
    title: str
    summary_markdown: str
    steps: list[str]
    confidence: float
    rationale: str
    model: str
    state_version: int
    status: str  # proposed | accepted | rejected
    supersede_time: datetime | None
    create_time: datetime
    decide_time: datetime | None
    decided_by: uuid.UUID | None = None
    decided_by_name: str | None = None
    reject_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NoteRevision:
    """One posted revision of a resolution note or escalation package."""

    id: uuid.UUID
    session_id: uuid.UUID
    kind: NoteKind
    revision: int
    text: str
    format: str
    state_version: int
    external_id: str
    post_time: datetime
    posted_by: uuid.UUID
    posted_by_name: str | None
    # The version of the task prompt it was written with (None before it was recorded).
    prompt_version: int | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    """A generated note or package, cached per (session, kind, state version, format)."""

    text: str
    format: str
    state_version: int
    model: str
    prompt_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox row delivery gave up on; its payload stays in the database."""

    id: uuid.UUID
    topic: str
    session: str | None  # the session's name, from the payload
    attempts: int
    last_error: str | None
    create_time: datetime
    dead_time: datetime


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A claimed outbox row, on its way to another service."""

    id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    trace: dict[str, str]
    attempts: int
    next_attempt_time: datetime
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a copilot reply proposes (one tool call): written only when applied."""

    id: uuid.UUID
    session_id: uuid.UUID
    message_id: uuid.UUID
    ordinal: int
    kind: str  # fact | lane_item | fix
    tool_call_id: str
    payload: dict[str, Any]
    state: str  # pending | applied | dismissed
    result: str | None
    decided_by: uuid.UUID | None
    decided_by_name: str | None
    decide_time: datetime | None
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a session's copilot conversation (immutable)."""

    id: uuid.UUID
    session_id: uuid.UUID
    role: str  # user | assistant
    text: str
    author: uuid.UUID
    author_name: str | None
    tool_calls: list[dict[str, Any]]
    model: str
    tier: str
    prompt_version: int
    input_tokens: int
    output_tokens: int
    partial: bool
    state_version: int
    create_time: datetime
    proposals: tuple[Proposal, ...] = ()
    citations: tuple[Citation, ...] = ()


@dataclass(frozen=True, slots=True)
class AiUsage:
    """An account's AI token usage in one calendar month (UTC)."""

    month: date  # its first day
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Citation:
    """What a copilot reply cites: a resolved session or a library template."""

    name: str
    title: str


@dataclass(frozen=True, slots=True)
class SimilarSession:
    """A resolved session like the one being worked, with its accepted fix."""

    id: uuid.UUID
    ticket_ref: str
    title: str
    problem: str
    resolution_summary: str
    fix_title: str = ""
    fix_steps: tuple[str, ...] = ()
