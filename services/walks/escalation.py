"""Escalating a walk into a FlowPilot session (service to service).

One synchronous call, forwarding the caller's own token (and, through the
gRPC client interceptor, the trace context): CreateSession with the walk's
path and notes as the session's facts, in one request, under the walk's
escalation request id. That id is random, stored on the walk when escalation
starts (nobody can compute it in advance), and re-sent by every retry, so a
retry after any failure gets the same session with one copy of each fact.
No transaction or row lock is held during the call.

What L1 wrote leaves the walk redacted, whatever the account's settings: a
password noted on a walk ("the local admin password is …") becomes
``[REDACTED]`` in the session's facts and problem
(``services.core.ai.redaction``); the walk keeps its notes as written.
"""

from __future__ import annotations

import uuid

import grpc
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.core.ai.redaction import redact
from services.core.clients import forwarded
from services.core.enums import TICKET_KIND
from services.core.errors import (
    Aborted,
    FailedPrecondition,
    FlowPilotError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from services.core.ids import canonical_uuid
from services.walks import trees
from services.walks.storage import Tree, WalkRow

MAX_FACT = 4096


def facts_for(walk: WalkRow, tree: Tree | None, *, reason: str, category: str) -> list[str]:
    facts = []
    for number, step in enumerate(walk.walked_path, start=1):
        text = trees.node(tree, step["node"])["text"] if tree else step["node"]
        facts.append(f"L1 step {number}: {text} → {step['choice']}")
    facts += [f"L1 note: {note['text']}" for note in walk.walk_notes]
    facts.append(f"Escalated by L1 ({category.replace('_', ' ')}): {reason}")
    # Cut after redaction: a cut must not leave half a secret unrecognised.
    return [redact(f)[:MAX_FACT] for f in facts]


class SessionsEscalator:
    def __init__(
        self, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, *, timeout_seconds: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._timeout = timeout_seconds

    async def escalate(
        self, walk: WalkRow, tree: Tree | None, *, reason: str, category: str, request_id: uuid.UUID
    ) -> uuid.UUID:
        title = f"L1 escalation: {walk.ticket_ref}"
        problem = (
            redact(reason)
            if walk.session_kind == "adhoc"
            else f"{redact(reason)}\n\n(walked {len(walk.walked_path)} step(s) of a {walk.session_kind} walk)"
        )
        facts = [
            sessions_pb2.Fact(text=text, source=sessions_pb2.FACT_SOURCE_USER)
            for text in facts_for(walk, tree, reason=reason, category=category)
        ]
        try:
            created = await self._sessions.CreateSession(
                sessions_pb2.CreateSessionRequest(
                    session=sessions_pb2.Session(
                        ticket_ref=walk.ticket_ref,
                        ticket_kind=TICKET_KIND.proto(walk.ticket_kind),
                        title=title[:200],
                        problem=problem[:8000],
                    ),
                    request_id=str(request_id),
                    force_new=True,
                    facts=facts,
                    # The session starts unassigned, in the team queue.
                    escalated_walk=f"walks/{walk.id}",
                ),
                metadata=forwarded(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _for_the_caller(exc) from exc
        session_id = canonical_uuid(created.session.name.removeprefix("sessions/"))
        if session_id is None:
            raise Unavailable("the sessions service answered with no session", reason="SESSIONS_UNAVAILABLE")
        return session_id


def _for_the_caller(exc: grpc.aio.AioRpcError) -> FlowPilotError:
    """What the sessions service's refusal means for the one escalating the walk."""
    code = exc.code()
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied("your role may not create sessions; ask an engineer to escalate")
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated("the token was refused by the sessions service")
    if code is grpc.StatusCode.ALREADY_EXISTS:
        return Aborted(
            "this walk's escalation was started by another user; they can retry it",
            reason="ESCALATION_STARTED_BY_ANOTHER_USER",
        )
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return FailedPrecondition(
            "the sessions service refused this walk's escalation", reason="ESCALATION_REFUSED"
        )
    return Unavailable(
        "the sessions service is unavailable; the escalation can be retried", reason="SESSIONS_UNAVAILABLE"
    )
