"""Escalating walks against a sessions service standing in on a real gRPC
server (slow, refusing, down), and the request-id rules that keep an
escalation from being hijacked within an account."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from flowpilot.walks.v1 import walks_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai.service import make_ai
from services.core.auth import Role
from services.core.db import Database
from services.walks.service import WalksConfig
from services.walks.service import build as build_walks
from tests.conftest import service_config_kwargs
from tests.support import Keys, RunDatabase, StandInAnswer, expect_error, stand_in


@dataclass
class StandInSessions(StandInAnswer, sessions_pb2_grpc.SessionsServiceServicer):
    """CreateSession only: records what arrives, answers as told."""

    refusal: str = "FAILED_PRECONDITION: internal detail of the sessions service"
    calls: list[sessions_pb2.CreateSessionRequest] = field(default_factory=list)
    made: dict[str, str] = field(default_factory=dict)  # request id → session name

    async def CreateSession(self, request: Any, context: Any) -> sessions_pb2.CreateSessionResponse:
        self.calls.append(request)
        await self.answer(context)
        name = self.made.setdefault(request.request_id, f"sessions/{uuid.uuid4()}")
        return sessions_pb2.CreateSessionResponse(session=sessions_pb2.Session(name=name))


@dataclass
class Stack:
    sessions: StandInSessions
    stub: Any
    keys: Keys
    application_name: str

    def md(self, account: uuid.UUID, role: Role = Role.ENGINEER, user: uuid.UUID | None = None) -> Any:
        return self.keys.metadata(account_id=account, role=role, user_id=user)

    async def walk(self, account: uuid.UUID, user: uuid.UUID) -> pb.Walk:
        request = pb.StartWalkRequest(
            ticket_ref=f"CW #{uuid.uuid4().int % 10**6}",
            ticket_kind=tickets_pb2.TICKET_KIND_PSA,
            kind=pb.WALK_KIND_ADHOC,
        )
        walk = (await self.stub.StartWalk(request, metadata=self.md(account, user=user))).walk
        for n in range(3):
            await self.stub.AddWalkNote(
                pb.AddWalkNoteRequest(name=walk.name, text=f"note {n}"), metadata=self.md(account, user=user)
            )
        return walk


@pytest.fixture
async def stack(
    database: RunDatabase, keys: Keys, service_keys: dict[str, Keys], settings_address: str
) -> AsyncIterator[Stack]:
    sessions = StandInSessions()  # type: ignore[abstract]  # the base answers UNIMPLEMENTED
    async with stand_in(sessions_pb2_grpc.add_SessionsServiceServicer_to_server, sessions) as address:
        name = f"walks-{uuid.uuid4().hex[:8]}"
        config = WalksConfig(
            **service_config_kwargs(database, keys, "walks", service_keys),
            settings_address=settings_address,
            sessions_address=address,
            sweep_interval_seconds=3600,
        )
        db = Database.connect(config.database_url, pool_size=4, read_pool_size=2, application_name=name)
        walks = build_walks(config, db, ai=make_ai())
        await walks.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{walks.port}") as channel:
                yield Stack(sessions, walks_pb2_grpc.WalksServiceStub(channel), keys, name)
        finally:
            await walks.stop()


def escalation(walk: str) -> pb.EscalateWalkRequest:
    return pb.EscalateWalkRequest(
        name=walk, reason="Printer offline for all", category=pb.ESCALATION_CATEGORY_NEEDS_ACCESS
    )


async def test_an_escalation_is_one_call_with_no_transaction_held_and_others_unaffected(
    stack: Stack, database: RunDatabase
) -> None:
    stack.sessions.delay = 1.0
    account, other = uuid.uuid4(), uuid.uuid4()
    user = uuid.uuid4()
    walks = [await stack.walk(account, user) for _ in range(14)]
    neighbour = await stack.walk(other, uuid.uuid4())
    escalations = [
        asyncio.ensure_future(
            stack.stub.EscalateWalk(escalation(w.name), metadata=stack.md(account, user=user))
        )
        for w in walks
    ]
    admin = create_async_engine(database.admin_url)
    held = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND state LIKE 'idle in transaction%'"
    try:
        async with asyncio.timeout(10):
            while stack.sessions.in_flight < 14:  # noqa: ASYNC110 (the stand-in offers no event)
                await asyncio.sleep(0.02)
        async with admin.connect() as conn:
            assert await conn.scalar(text(held), {"n": stack.application_name}) == 0
        # Another tenant's read while 14 escalations wait on the sessions service.
        started = time.monotonic()
        await stack.stub.GetWalk(pb.GetWalkRequest(name=neighbour.name), metadata=stack.md(other))
        assert time.monotonic() - started < 0.5
    finally:
        await admin.dispose()
    escalated = await asyncio.gather(*escalations)
    assert all(w.status == pb.WALK_STATUS_ESCALATED and w.session for w in escalated)
    assert len(stack.sessions.calls) == 14  # one call per escalation
    request = stack.sessions.calls[0]
    assert [f.text for f in request.facts][:3] == ["L1 note: note 0", "L1 note: note 1", "L1 note: note 2"]
    assert request.facts[-1].text.startswith("Escalated by L1")


async def test_a_refused_or_failed_escalation_keeps_the_walk_frozen_and_retries_with_the_same_id(
    stack: Stack,
) -> None:
    account, user = uuid.uuid4(), uuid.uuid4()
    md = stack.md(account, user=user)
    walk = await stack.walk(account, user)
    escalate = escalation(walk.name)
    for code, expected, reason in [
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, "SESSIONS_UNAVAILABLE"),
        (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, "SESSIONS_UNAVAILABLE"),
        (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION, "ESCALATION_REFUSED"),
        (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED, "ESCALATION_STARTED_BY_ANOTHER_USER"),
        (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    ]:
        stack.sessions.refuse = code
        error = await expect_error(stack.stub.EscalateWalk(escalate, metadata=md), expected, reason=reason)
        assert "internal detail" not in error.message and code.name not in error.message, error
    # Frozen: no more steps while its escalation is pending, but it may be abandoned.
    await expect_error(
        stack.stub.AddWalkNote(pb.AddWalkNoteRequest(name=walk.name, text="more"), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="ESCALATION_IN_PROGRESS",
    )
    stack.sessions.refuse = None
    # A retry with another reason re-sends the first attempt's request.
    edited = pb.EscalateWalkRequest(
        name=walk.name, reason="Edited reason", category=pb.ESCALATION_CATEGORY_OTHER
    )
    escalated = await stack.stub.EscalateWalk(edited, metadata=md)
    assert {call.session.problem for call in stack.sessions.calls} == {"Printer offline for all"}
    assert escalated.escalation_reason == "Printer offline for all"
    assert escalated.status == pb.WALK_STATUS_ESCALATED
    ids = {call.request_id for call in stack.sessions.calls}
    assert len(ids) == 1  # every attempt sent the same request id
    [request_id] = ids
    assert uuid.UUID(request_id) != uuid.uuid5(
        uuid.NAMESPACE_URL, f"flowpilot://walks/{walk.name[6:]}/escalation"
    )
    again = await stack.stub.EscalateWalk(escalate, metadata=md)
    assert again.session == escalated.session and len(stack.sessions.calls) == 6


async def test_a_request_id_replays_only_for_its_caller_and_its_request(
    sessions_channel: grpc.aio.Channel, keys: Keys, database: RunDatabase
) -> None:
    account = uuid.uuid4()
    engineer, other = uuid.uuid4(), uuid.uuid4()
    stub = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    request_id = str(uuid.uuid4())

    def create(user: uuid.UUID, title: str = "VPN drops") -> Any:
        request = sessions_pb2.CreateSessionRequest(
            session=sessions_pb2.Session(
                ticket_ref="CW #5", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title=title
            ),
            request_id=request_id,
            force_new=True,
            facts=[sessions_pb2.Fact(text="L1 note: whole floor", source=sessions_pb2.FACT_SOURCE_USER)],
        )
        return stub.CreateSession(
            request, metadata=keys.metadata(account_id=account, user_id=user, role=Role.ENGINEER)
        )

    # Another engineer of the account takes the id first: the owner's call is
    # refused, never handed the other's session.
    squatted = (await create(other)).session
    error = await expect_error(create(engineer), grpc.StatusCode.ALREADY_EXISTS, reason="REQUEST_ID_REUSED")
    assert squatted.name not in error.message
    # Its own caller, the same request: the same session; another request: refused.
    assert (await create(other)).session.name == squatted.name
    await expect_error(
        create(other, title="Something else"), grpc.StatusCode.ALREADY_EXISTS, reason="REQUEST_ID_REUSED"
    )
    facts = await stub.ListFacts(
        sessions_pb2.ListFactsRequest(parent=squatted.name),
        metadata=keys.metadata(account_id=account, user_id=other, role=Role.ENGINEER),
    )
    assert [f.text for f in facts.facts] == ["L1 note: whole floor"]  # once, for all the replays
