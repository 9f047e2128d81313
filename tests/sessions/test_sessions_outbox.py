"""Outbox delivery against a library standing in on a real gRPC server (slow,
refusing, or down): no transaction is held during a call, a fresh token per
call, one small message per script, dead letters listed and retried."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai.service import make_ai
from services.core.auth import Role, ServiceCredential
from services.core.db import Database
from services.sessions import outbox_storage
from services.sessions.outbox import OutboxDelivery
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from tests.conftest import service_config_kwargs
from tests.sessions.helpers import Caller
from tests.support import AUDIENCE, Keys, RunDatabase, StandInAnswer, admin_scalar, expect_error, stand_in


@dataclass
class StandInLibrary(StandInAnswer, library_pb2_grpc.LibraryServiceServicer):
    """ImportSessionScripts only: records what arrives, answers as told."""

    calls: list[tuple[library_pb2.ImportSessionScriptsRequest, str]] = field(default_factory=list)

    async def ImportSessionScripts(
        self, request: Any, context: Any
    ) -> library_pb2.ImportSessionScriptsResponse:
        token = dict(context.invocation_metadata())["authorization"].removeprefix("Bearer ")
        self.calls.append((request, token))
        await self.answer(context)
        return library_pb2.ImportSessionScriptsResponse()


@dataclass
class Stack:
    library: StandInLibrary
    caller: Caller
    admin: Caller
    application_name: str


@pytest.fixture
async def stack(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    only_this_replica_delivers: None,
) -> AsyncIterator[Stack]:
    library = StandInLibrary()  # type: ignore[abstract]  # the base answers UNIMPLEMENTED
    async with stand_in(library_pb2_grpc.add_LibraryServiceServicer_to_server, library) as address:
        name = f"outbox-{uuid.uuid4().hex[:8]}"
        config = SessionsConfig(
            **service_config_kwargs(database, keys, "sessions", service_keys),
            settings_address=settings_address,
            settings_cache_seconds=0,
            library_address=address,
            outbox_poll_seconds=0.1,
            outbox_base_backoff_seconds=0.05,
            outbox_max_backoff_seconds=0.1,
            outbox_max_attempts=3,
        )
        db = Database.connect(config.database_url, pool_size=4, read_pool_size=2, application_name=name)
        sessions = build_sessions(config, db, ai=make_ai())
        await sessions.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{sessions.port}") as channel:
                caller = Caller(channel, keys)
                yield Stack(library, caller, caller.as_role(Role.TEAM_ADMIN), name)
        finally:
            await sessions.stop()


async def _resolve_with_scripts(caller: Caller, count: int) -> pb.Session:
    session = await caller.session()
    for n in range(count):
        await caller.lane_item(
            session,
            kind=pb.LANE_ITEM_KIND_SCRIPT,
            title=f"Script {n}",
            script_body=f"Get-Service Spooler # {n}",
            script_language=pb.SCRIPT_LANGUAGE_POWERSHELL,
            status=pb.LANE_ITEM_STATUS_DONE,
        )
    return await caller.call("ResolveSession", pb.ResolveSessionRequest(name=session.name, summary="Fixed"))


async def _until(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (polling what a server records)
            await asyncio.sleep(0.02)


async def test_delivery_holds_no_transaction_during_a_call_and_sends_one_script_each(
    stack: Stack, database: RunDatabase
) -> None:
    stack.library.delay = 1.2
    session = await _resolve_with_scripts(stack.caller, 2)
    admin = create_async_engine(database.admin_url)
    held = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND state LIKE 'idle in transaction%'"
    try:
        for expected in (1, 2):  # while each of the two calls is in flight (1.2 s each)
            await _until(lambda n=expected: stack.library.in_flight == 1 and len(stack.library.calls) == n)
            async with admin.connect() as conn:
                assert await conn.scalar(text(held), {"n": stack.application_name}) == 0
    finally:
        await admin.dispose()
    await _until(lambda: len(stack.library.calls) == 2)
    requests = [request for request, _ in stack.library.calls]
    assert all(len(r.scripts) == 1 and r.session == session.name for r in requests)
    assert {r.scripts[0].title for r in requests} == {"Script 0", "Script 1"}
    # A token minted for each call (the second after the first call's 1.2 s).
    issued = [
        jwt.decode(token, options={"verify_signature": False})["iat"] for _, token in stack.library.calls
    ]
    assert issued[1] > issued[0]


async def test_refused_work_becomes_a_dead_letter_that_team_admins_list_and_retry(
    stack: Stack, keys: Keys
) -> None:
    stack.library.refuse = grpc.StatusCode.INVALID_ARGUMENT  # no retry mends it: dead at once
    session = await _resolve_with_scripts(stack.caller, 1)
    await _until(lambda: len(stack.library.calls) == 1)
    listed: pb.ListDeadLettersResponse = pb.ListDeadLettersResponse()

    async def dead() -> bool:
        nonlocal listed
        listed = await stack.admin.call("ListDeadLetters", pb.ListDeadLettersRequest())
        return len(listed.dead_letters) == 1

    async with asyncio.timeout(10):
        while not await dead():  # noqa: ASYNC110 (polling the service)
            await asyncio.sleep(0.05)
    [letter] = listed.dead_letters
    assert letter.session == session.name and letter.attempts == 1
    assert letter.topic == "library.import_session_scripts" and "INVALID_ARGUMENT" in letter.last_error
    assert letter.name.startswith("deadLetters/")
    await asyncio.sleep(0.4)
    assert len(stack.library.calls) == 1  # never retried by itself

    await expect_error(
        stack.caller.call("ListDeadLetters", pb.ListDeadLettersRequest()), grpc.StatusCode.PERMISSION_DENIED
    )
    stranger = Caller(stack.caller.channel, keys, role=Role.TEAM_ADMIN)
    assert not (await stranger.call("ListDeadLetters", pb.ListDeadLettersRequest())).dead_letters
    await expect_error(
        stranger.call("RetryDeadLetter", pb.RetryDeadLetterRequest(name=letter.name)),
        grpc.StatusCode.NOT_FOUND,
    )

    stack.library.refuse = None
    retried = await stack.admin.call("RetryDeadLetter", pb.RetryDeadLetterRequest(name=letter.name))
    assert retried.name == letter.name
    await _until(lambda: len(stack.library.calls) == 2)
    await asyncio.sleep(0.3)
    assert not (await stack.admin.call("ListDeadLetters", pb.ListDeadLettersRequest())).dead_letters
    await expect_error(
        stack.admin.call("RetryDeadLetter", pb.RetryDeadLetterRequest(name=letter.name)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_library_that_stays_down_ends_in_a_dead_letter_after_the_attempts(stack: Stack) -> None:
    stack.library.refuse = grpc.StatusCode.UNAVAILABLE
    await _resolve_with_scripts(stack.caller, 1)
    await _until(lambda: len(stack.library.calls) == 3, seconds=30)  # outbox_max_attempts
    await asyncio.sleep(0.5)
    assert len(stack.library.calls) == 3
    [letter] = (await stack.admin.call("ListDeadLetters", pb.ListDeadLettersRequest())).dead_letters
    assert letter.attempts == 3 and "UNAVAILABLE" in letter.last_error


async def test_dead_letters_page(stack: Stack) -> None:
    stack.library.refuse = grpc.StatusCode.FAILED_PRECONDITION
    await _resolve_with_scripts(stack.caller, 3)
    await _until(lambda: len(stack.library.calls) == 3)
    await asyncio.sleep(0.3)
    first = await stack.admin.call("ListDeadLetters", pb.ListDeadLettersRequest(page_size=2))
    second = await stack.admin.call(
        "ListDeadLetters", pb.ListDeadLettersRequest(page_size=2, page_token=first.next_page_token)
    )
    names = [d.name for d in first.dead_letters] + [d.name for d in second.dead_letters]
    assert len(names) == len(set(names)) == 3 and not second.next_page_token


async def test_a_claim_outlived_by_its_lease_is_taken_over_and_its_late_outcome_ignored(
    sessions_channel: grpc.aio.Channel,
    keys: Keys,
    database: RunDatabase,
    service_keys: dict[str, Keys],
    only_this_replica_delivers: None,
) -> None:
    """Two replicas: the first claims the row and hangs on a slow library past
    its lease; the second takes the row over and delivers it; the first's late
    outcome (a refusal, which would make a dead letter) then changes nothing."""
    me = Caller(sessions_channel, keys)
    session = await _resolve_with_scripts(me, 1)
    credential = ServiceCredential(
        service="sessions", private_key=service_keys["sessions"].private_pem, audience=AUDIENCE
    )
    slow = StandInLibrary(delay=1.5, refuse=grpc.StatusCode.INVALID_ARGUMENT)  # type: ignore[abstract]
    fast = StandInLibrary()  # type: ignore[abstract]
    add = library_pb2_grpc.add_LibraryServiceServicer_to_server
    db = Database.connect(database.runtime_url("sessions"), pool_size=2, read_pool_size=1)
    try:
        async with (
            stand_in(add, slow) as slow_address,
            stand_in(add, fast) as fast_address,
            grpc.aio.insecure_channel(slow_address) as to_slow,
            grpc.aio.insecure_channel(fast_address) as to_fast,
        ):
            first = OutboxDelivery(
                db, library_pb2_grpc.LibraryServiceStub(to_slow), credential, lease_seconds=0.5
            )
            second = OutboxDelivery(db, library_pb2_grpc.LibraryServiceStub(to_fast), credential)
            late = asyncio.ensure_future(first.deliver_due())
            await _until(lambda: any(r.session == session.name for r, _ in slow.calls))
            await asyncio.sleep(0.7)  # the first claim's lease is over
            await second.deliver_due()
            assert any(r.session == session.name for r, _ in fast.calls)
            await late
    finally:
        await db.dispose()
    sql = (
        "SELECT (deliver_time IS NOT NULL)::int * 100 + attempts * 10 + (dead_time IS NOT NULL)::int"
        " FROM sessions.outbox WHERE dedupe_key LIKE :k"
    )
    # Delivered, one attempt counted (the second replica's), never a dead letter.
    assert await admin_scalar(database, sql, k=session.name.split("/")[1] + "/%") == 110


async def test_a_claim_takes_at_most_its_batch(
    sessions_channel: grpc.aio.Channel, keys: Keys, database: RunDatabase, only_this_replica_delivers: None
) -> None:
    """A claim takes ``batch`` due rows however many are due (the rows it
    claims stop being due as it claims them, so a subquery run again would
    find more)."""
    me = Caller(sessions_channel, keys)
    await _resolve_with_scripts(me, 5)
    db = Database.connect(database.runtime_url("sessions"), pool_size=1, read_pool_size=1)
    try:
        async with db.transaction(me.account) as conn:
            claimed = await outbox_storage.claim_outbox(conn, batch=2, lease=timedelta(seconds=60))
            assert len(claimed) == 2
            rest = await outbox_storage.claim_outbox(conn, batch=10, lease=timedelta(seconds=60))
            assert len(rest) == 3 and not {m.id for m in rest} & {m.id for m in claimed}
    finally:
        await db.dispose()
