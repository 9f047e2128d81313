"""Escalating a walk into a FlowPilot session (service to service).

A synchronous call that forwards the caller's own token (and, through the
gRPC client interceptor, the trace context). It is idempotent: the session is
created with a request id derived from the walk, and facts are added only
when the session does not already have them, so a retry after any failure
creates one session with one copy of each fact.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.core.clients import forwarded
from services.core.errors import Internal, Unavailable
from services.walks import trees

TICKET_KINDS = {"psa": sessions_pb2.TICKET_KIND_PSA, "internal": sessions_pb2.TICKET_KIND_INTERNAL}
MAX_FACT = 4096


def escalation_request_id(walk_id: uuid.UUID) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowpilot://walks/{walk_id}/escalation"))


def facts_for(walk: Any, tree: dict[str, Any] | None, *, reason: str, category: str) -> list[str]:
    facts = []
    for number, step in enumerate(walk.walked_path, start=1):
        text = trees.node(tree, step["node"])["text"] if tree else step["node"]
        facts.append(f"L1 step {number}: {text} → {step['choice']}")
    facts += [f"L1 note: {note['text']}" for note in walk.walk_notes]
    facts.append(f"Escalated by L1 ({category.replace('_', ' ')}): {reason}")
    return [f[:MAX_FACT] for f in facts]


class SessionsEscalator:
    def __init__(
        self, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, *, timeout_seconds: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._timeout = timeout_seconds

    async def escalate(
        self, walk: Any, tree: dict[str, Any] | None, *, reason: str, category: str
    ) -> uuid.UUID:
        metadata = forwarded()
        title = f"L1 escalation: {walk.ticket_id}"
        problem = (
            reason
            if walk.session_kind == "adhoc"
            else f"{reason}\n\n(walked {len(walk.walked_path)} step(s) of a {walk.session_kind} walk)"
        )
        try:
            created = await self._sessions.CreateSession(
                sessions_pb2.CreateSessionRequest(
                    session=sessions_pb2.Session(
                        ticket_ref=walk.ticket_id,
                        ticket_kind=TICKET_KINDS[walk.ticket_kind],
                        title=title[:200],
                        problem=problem[:8000],
                    ),
                    request_id=escalation_request_id(walk.id),
                    force_new=True,
                ),
                metadata=metadata,
                timeout=self._timeout,
            )
            session = created.session
            existing = await self._sessions.ListFacts(
                sessions_pb2.ListFactsRequest(parent=session.name, page_size=1000),
                metadata=metadata,
                timeout=self._timeout,
            )
            have = {f.text for f in existing.facts}
            for text in facts_for(walk, tree, reason=reason, category=category):
                if text not in have:
                    await self._sessions.CreateFact(
                        sessions_pb2.CreateFactRequest(
                            parent=session.name,
                            fact=sessions_pb2.Fact(text=text, source=sessions_pb2.FACT_SOURCE_USER),
                        ),
                        metadata=metadata,
                        timeout=self._timeout,
                    )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "the sessions service is unavailable; nothing changed, retry",
                    reason="SESSIONS_UNAVAILABLE",
                ) from exc
            raise Internal(
                f"creating the escalation session failed: {exc.code().name}", reason="ESCALATION_FAILED"
            ) from exc
        return uuid.UUID(session.name.removeprefix("sessions/"))
