"""The copilot conversation of a session: the engineer's messages, the
copilot's replies, and what the replies propose.

- **Who talks to it.** Sending a message is working the session: only who may
  change it (:func:`handoff.require_worker`) and only while it is active.
  Anyone in the account reads the conversation.
- **What the model sees** (:func:`services.core.ai.prompt.chat_context`): the
  session (problem, facts, task lane, active and rejected fixes, timeline),
  never dropped, then the conversation, newest first, as far as the tier's
  token budget goes (older turns are left out and counted). Everything is
  redacted when ``notes.redact_sensitive`` is on (the AI facade).
- **Limits.** A message is at most :data:`MAX_MESSAGE_CHARS` (the proto's
  ``max_size``, enforced by the runtime); a conversation holds at most
  :data:`MAX_CONVERSATION_MESSAGES` messages and
  :data:`MAX_CONVERSATION_CHARS` characters (FAILED_PRECONDITION
  ``CONVERSATION_FULL``); every reply takes a token of the account's model
  call limiter (RESOURCE_EXHAUSTED ``AI_RATE_LIMITED``) and is refused once
  the account's monthly token budget is spent (RESOURCE_EXHAUSTED
  ``AI_TOKEN_BUDGET_SPENT``, :mod:`usage`); its tokens are added to the
  month's usage in the transaction that stores it.
- **Grounded in the account's knowledge** (:mod:`knowledge`): similar
  resolved sessions (full-text search, under RLS) and matching library
  templates (the library's API, with the caller's token, outside any
  transaction; a library down means no templates, not a failed reply) go
  into the model's context, and the reply cites every one of them
  (``citations``).
- **Nothing is written silently.** Messages are immutable; what the copilot
  would write (a fact, a task-lane item, a fix) is stored as a pending
  proposal on its reply.

The model is never called inside a transaction: the session and the
conversation are read, the model called, then the message and its reply
written in a second transaction that checks the session again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.core import ids, names
from services.core.ai import (
    AI,
    ChatEvent,
    ChatRequest,
    Preferences,
    ProposalDraft,
    Proposed,
    ReplyDone,
    TextDelta,
    Turn,
)
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import FailedPrecondition, FlowPilotError, found
from services.sessions import copilot_storage, knowledge, lane, lifecycle, notes, storage, usage
from services.sessions.resources import FACT, FIX, LANE_ITEM, PROPOSAL
from services.sessions.rows import Citation, LaneItem, Message, Proposal, Session
from services.sessions.storage import Connection

MAX_MESSAGE_CHARS = 8000
MAX_CONVERSATION_MESSAGES = 500
MAX_CONVERSATION_CHARS = 2_000_000
# The newest messages read for the model; its budget keeps what fits of them.
HISTORY_MESSAGES = 100
# The longest reply stored (a model writing past it is cut: ``partial``).
MAX_REPLY_CHARS = 32_000


# --- rules ---------------------------------------------------------------------


def check_room(messages: int, chars: int, adding: int) -> None:
    """A conversation takes a message and its reply only below its bounds."""
    if messages + 2 > MAX_CONVERSATION_MESSAGES or chars + adding > MAX_CONVERSATION_CHARS:
        raise FailedPrecondition(
            f"the conversation holds at most {MAX_CONVERSATION_MESSAGES} messages and "
            f"{MAX_CONVERSATION_CHARS:,} characters; start a new session to go on",
            reason="CONVERSATION_FULL",
            metadata={"messages": str(messages), "characters": str(chars)},
        )


def history(messages: list[Message]) -> tuple[Turn, ...]:
    return tuple(Turn(role=m.role, text=m.text) for m in messages)


def payload(proposal: ProposalDraft) -> dict[str, Any]:
    """What a proposal stores: only the fields its kind writes."""
    if proposal.kind == "fact":
        return {"text": proposal.title}
    if proposal.kind == "lane_item":
        return {"lane_kind": proposal.lane_kind, "title": proposal.title[:200], "detail": proposal.detail}
    return {"title": proposal.title[:200], "summary": proposal.detail, "steps": list(proposal.steps)}


def require_pending(proposal: Proposal) -> None:
    """A proposal is applied or dismissed once."""
    if proposal.state != "pending":
        raise FailedPrecondition(
            f"the proposal is {proposal.state} already",
            reason="PROPOSAL_NOT_PENDING",
            metadata={"state": proposal.state},
        )


def proposal_ids(name: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """(session, message, proposal) ids of a proposal's name (INVALID_ARGUMENT on ``name``)."""
    parts = names.parse(name, PROPOSAL, field="name")
    return (
        ids.parse_uuid(parts["session"], field="name", what="session id"),
        ids.parse_uuid(parts["message"], field="name", what="message id"),
        ids.parse_uuid(parts["proposal"], field="name", what="proposal id"),
    )


def new_lane_item(given: dict[str, Any], now: datetime) -> LaneItem:
    at = now.isoformat()
    return {
        "id": str(uuid.uuid4()),
        "kind": given["lane_kind"],
        "title": given["title"],
        "detail": given.get("detail", ""),
        "script_body": "",
        "script_language": "",
        "status": "pending",
        "output": "",
        "create_time": at,
        "update_time": at,
    }


@dataclass
class Reply:
    """A reply as it arrives: its text, proposals, and who wrote it."""

    text: str = ""
    proposals: list[ProposalDraft] = field(default_factory=list)
    done: ReplyDone | None = None

    def add(self, event: ChatEvent) -> None:
        if isinstance(event, TextDelta):
            self.text = (self.text + event.text)[:MAX_REPLY_CHARS]
        elif isinstance(event, Proposed):
            self.proposals.append(event.proposal)
        else:
            self.done = event


@dataclass(frozen=True, slots=True)
class Asked:
    """A message ready for the model: the session as read, the request, the
    account's preferences and when the message arrived."""

    session: Session
    request: ChatRequest
    prefs: Preferences
    received: datetime


class Copilot:
    def __init__(
        self,
        db: Database,
        ai: AI,
        settings: SettingsReader,
        clock: Callable[[], datetime],
        library: knowledge.Library | None = None,
    ) -> None:
        self._library = library or knowledge.Library(None)
        self._db = db
        self._ai = ai
        self._settings = settings
        self._clock = clock

    async def ask(self, principal: Principal, session_id: uuid.UUID, text: str) -> Asked:
        """Reads what the model needs for ``text`` (NOT_FOUND, PERMISSION_DENIED,
        FAILED_PRECONDITION as any change of the session)."""
        received = self._clock()
        prefs = await self._settings.preferences()
        zone = ZoneInfo(await self._settings.choice("notes.time_zone"))
        budget = await self._settings.number(usage.BUDGET_SETTING)
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id)
            lifecycle.require_writable(row, principal)
            # Room for the question and the longest reply: the model is never
            # paid for a reply the conversation cannot take.
            check_room(
                *await copilot_storage.conversation_size(conn, session_id), len(text) + MAX_REPLY_CHARS
            )
            if budget > 0:
                spent = await copilot_storage.month_usage(conn, usage.month_of(received))
                usage.require_budget(spent, budget, received)
            ctx = await notes.context(conn, row, zone)
            earlier = await copilot_storage.recent_messages(conn, session_id, limit=HISTORY_MESSAGES)
            words = knowledge.terms(text, row.title, row.problem)
            similar = await copilot_storage.similar_resolved(
                conn, words=words, exclude=session_id, limit=knowledge.MAX_SESSIONS
            )
        # After the transaction: no transaction is held across another service's call.
        templates = await self._library.templates(words)
        references = (*(knowledge.session_reference(s) for s in similar), *templates)
        request = ChatRequest(session=ctx, history=history(earlier), question=text, references=references)
        return Asked(session=row, request=request, prefs=prefs, received=received)

    async def reply(self, asked: Asked) -> AsyncIterator[ChatEvent]:
        """The model's reply as a stream of events (the call counted, or
        refused past the account's limit, before the stream starts)."""
        return await self._ai.chat(asked.request, asked.prefs)

    async def send(self, principal: Principal, session_id: uuid.UUID, text: str) -> tuple[Message, Message]:
        """(the engineer's message, the copilot's reply), both stored."""
        asked = await self.ask(principal, session_id, text)
        reply = Reply()
        async for event in await self.reply(asked):
            reply.add(event)
        return await self.record(principal, asked, reply)

    async def stream(
        self, principal: Principal, session_id: uuid.UUID, text: str
    ) -> AsyncIterator[TextDelta | Proposed | tuple[Message, Message]]:
        """The reply as it arrives (text deltas, proposals), then (the stored
        message, the stored reply). Refusals come before the first event.
        Cut short, by the caller going away (the model request is closed with
        the stream) or by a model failure after something arrived, what
        arrived is stored as a partial reply."""
        asked = await self.ask(principal, session_id, text)
        events = await self.reply(asked)
        reply = Reply()
        try:
            async for event in events:
                reply.add(event)
                if isinstance(event, TextDelta | Proposed):
                    yield event
        except (asyncio.CancelledError, GeneratorExit):
            await _aclose(events)
            await asyncio.shield(self.record(principal, asked, reply, partial=True))
            raise
        except FlowPilotError:
            if reply.text or reply.proposals:
                await self.record(principal, asked, reply, partial=True)
            raise
        yield await self.record(principal, asked, reply)

    async def record(
        self, principal: Principal, asked: Asked, reply: Reply, *, partial: bool = False
    ) -> tuple[Message, Message]:
        """Stores the message and its reply (``partial``: cut short) with the
        reply's proposals pending, the session checked again under its lock."""
        session_id = asked.session.id
        done = reply.done or ReplyDone(model="")
        # The model was called whatever arrived, and whether or not the
        # messages can still be stored (the session changed hands, the
        # conversation filled up meanwhile): the call and its tokens count.
        async with self._db.transaction(principal.account_id) as conn:
            await copilot_storage.add_usage(
                conn,
                account_id=principal.account_id,
                month=usage.month_of(self._clock()),
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
            )
        async with self._db.transaction(principal.account_id) as conn:
            row = await lifecycle.find(conn, session_id, lock=True)
            lifecycle.require_writable(row, principal)
            check_room(
                *await copilot_storage.conversation_size(conn, session_id),
                len(asked.request.question) + len(reply.text),
            )
            name = principal.display_name or None
            # Stamped now, under the session's lock, not when the question was
            # asked: an exchange stored meanwhile (another caller's) must not
            # land after a page a poller already holds a token past.
            stored = self._clock()
            sent = await copilot_storage.insert_message(
                conn,
                account_id=principal.account_id,
                session_id=session_id,
                role="user",
                text=asked.request.question,
                author=principal.user_id,
                author_name=name,
                state_version=asked.session.state_version,
                create_time=stored,
            )
            answered = await copilot_storage.insert_message(
                conn,
                account_id=principal.account_id,
                session_id=session_id,
                role="assistant",
                text=reply.text,
                author=principal.user_id,
                author_name=name,
                state_version=asked.session.state_version,
                create_time=stored + timedelta(microseconds=1),  # after the question
                tool_calls=[p.model_dump(exclude_defaults=True) for p in reply.proposals],
                model=done.model,
                tier=done.tier,
                prompt_version=asked.prefs.prompts.version("task.chat"),
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
                partial=partial or reply.done is None,
                citations=[Citation(name=r.name, title=r.title) for r in asked.request.references],
                proposals=[(p.kind, p.tool_call_id, payload(p)) for p in reply.proposals],
            )
        return sent, answered

    async def page(
        self,
        account: uuid.UUID,
        session_id: uuid.UUID,
        *,
        newest_first: bool,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Message]:
        async with self._db.transaction(account) as conn:
            await lifecycle.find(conn, session_id)
            return await copilot_storage.list_messages(
                conn, session_id, newest_first=newest_first, after=after, limit=limit
            )

    # --- proposals ----------------------------------------------------------------

    async def _decided(self, principal: Principal, name: str, conn: Connection) -> tuple[Session, Proposal]:
        """The session (locked) and the pending proposal ``name``, for ``principal`` to decide."""
        session_id, message_id, proposal_id = proposal_ids(name)
        row = await lifecycle.find(conn, session_id, lock=True)
        proposal = found(
            await copilot_storage.get_proposal(conn, session_id, message_id, proposal_id), "proposal", name
        )
        lifecycle.require_writable(row, principal)
        require_pending(proposal)
        return row, proposal

    async def apply(self, principal: Principal, name: str) -> Proposal:
        """Writes what the proposal proposes, as the engineer's own write would
        (the state version moves), and marks it applied, in one transaction."""
        async with self._db.transaction(principal.account_id) as conn:
            row, proposal = await self._decided(principal, name, conn)
            result = await self._write(conn, principal, row, proposal)
            decided = await copilot_storage.decide_proposal(
                conn,
                proposal.id,
                "applied",
                result=result,
                decided_by=principal.user_id,
                decided_by_name=principal.display_name or None,
            )
        return found(decided, "proposal", name)

    async def dismiss(self, principal: Principal, name: str) -> Proposal:
        async with self._db.transaction(principal.account_id) as conn:
            _, proposal = await self._decided(principal, name, conn)
            decided = await copilot_storage.decide_proposal(
                conn,
                proposal.id,
                "dismissed",
                result=None,
                decided_by=principal.user_id,
                decided_by_name=principal.display_name or None,
            )
        return found(decided, "proposal", name)

    async def _write(self, conn: Connection, principal: Principal, row: Session, proposal: Proposal) -> str:
        """Applies ``proposal`` to the locked session ``row`` by the rules of
        facts, the task lane and fixes; the name of what it wrote."""
        given = proposal.payload
        if proposal.kind == "fact":
            fact = await storage.insert_fact(
                conn,
                account_id=principal.account_id,
                id=uuid.uuid4(),
                session_id=row.id,
                text=given["text"],
                source="ai",
                created_by=principal.user_id,
            )
            await storage.bump_state(conn, row.id)
            return names.format_name(FACT, session=row.id, fact=fact.id)
        if proposal.kind == "lane_item":
            lane.check_room(row.pending_task_lane)
            item = new_lane_item(given, self._clock())
            items = [*row.pending_task_lane, item]
            lane.check_size(items)
            await storage.update_session(conn, row.id, lane=items)
            return names.format_name(LANE_ITEM, session=row.id, lane_item=item["id"])
        await storage.supersede_active_fix(conn, row.id)
        fix = await storage.insert_fix(
            conn,
            account_id=principal.account_id,
            id=uuid.uuid4(),
            session_id=row.id,
            title=given["title"],
            summary_markdown=given.get("summary") or given["title"],
            steps=list(given.get("steps", [])),
            confidence=0.5,
            rationale="Proposed by the copilot in the conversation and applied by the engineer.",
            model="copilot",
            state_version=row.state_version,
        )
        await storage.bump_state(conn, row.id)
        return names.format_name(FIX, session=row.id, fix=fix.id)


async def _aclose(events: AsyncIterator[ChatEvent]) -> None:
    """Closes the model's stream now (its HTTP response with it)."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
