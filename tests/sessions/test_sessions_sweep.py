"""The stale-session sweep on the real database and settings service, with an
injected clock: each account's own setting, per account under its RLS, a
recorded closer and reason, idempotent, one account's failure leaving the
others swept, and the narrow function it finds accounts with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role, ServiceCredential, current_principal, service_user_id
from services.core.background import Periodic
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.server import GrpcServer
from services.sessions import storage
from services.sessions.handoff import SWEEP
from services.sessions.sweep import StaleSessionSweep
from tests.conftest import FakeClock
from tests.sessions.helpers import Caller
from tests.support import AUDIENCE, Keys, RunDatabase


async def _set_hours(settings_channel: grpc.aio.Channel, caller: Caller, hours: int) -> None:
    await settings_pb2_grpc.SettingsServiceStub(settings_channel).UpdateSetting(
        settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/sessions.stale_after_hours", value=struct_pb2.Value(number_value=hours)
            )
        ),
        metadata=caller.as_role(Role.TEAM_ADMIN).md,
    )


async def _backdate(database: RunDatabase, session: pb.Session, hours: float) -> None:
    """The session's last change, ``hours`` before now (as if it had waited)."""
    admin = create_async_engine(database.admin_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE sessions.ai_sessions SET update_time = now() - make_interval(secs => :s) WHERE id = :id"
                ),
                {"s": hours * 3600, "id": session.name.removeprefix("sessions/")},
            )
    finally:
        await admin.dispose()


def _abandoned_total() -> float:
    return REGISTRY.get_sample_value("flowpilot_session_sweep_abandoned_sessions_total") or 0.0


class RefusingSettings(SettingsReader):
    """The settings service failing for one account (the others answer)."""

    def __init__(self, inner: SettingsReader, refused: uuid.UUID) -> None:
        self._inner, self._refused = inner, refused

    async def number(self, key: str) -> int:
        if current_principal().account_id == self._refused:
            raise RuntimeError("settings unavailable for this account")
        return await self._inner.number(key)


@pytest.fixture
async def sweep_parts(
    database: RunDatabase, settings_channel: grpc.aio.Channel, service_keys: dict[str, Keys]
) -> AsyncIterator[tuple[Database, SettingsReader, ServiceCredential]]:
    db = Database.connect(database.runtime_url("sessions"), pool_size=2, read_pool_size=1)
    settings = SettingsReader(settings_pb2_grpc.SettingsServiceStub(settings_channel), ttl_seconds=0)
    credential = ServiceCredential(
        service="sessions", private_key=service_keys["sessions"].private_pem, audience=AUDIENCE
    )
    try:
        yield db, settings, credential
    finally:
        await db.dispose()


async def test_each_account_is_swept_by_its_own_setting_with_a_recorded_closer(
    sessions_channel: grpc.aio.Channel,
    settings_channel: grpc.aio.Channel,
    keys: Keys,
    sweep_parts: tuple[Database, SettingsReader, ServiceCredential],
) -> None:
    db, settings, credential = sweep_parts
    quick, slow = Caller(sessions_channel, keys), Caller(sessions_channel, keys)
    await _set_hours(settings_channel, quick, 10)
    quick_session, slow_session = await quick.session(), await slow.session()
    done = await quick.session()
    await quick.call("ResolveSession", pb.ResolveSessionRequest(name=done.name, summary="Fixed"))
    clock = FakeClock()
    sweep = StaleSessionSweep(db, settings, credential, clock=clock, batch=1)

    clock.advance(hours=9, minutes=59)
    assert await sweep.sweep_account(credential.principal_for(quick.account)) == (0, 10)
    clock.advance(minutes=2)
    before = _abandoned_total()
    assert await sweep.sweep_account(credential.principal_for(quick.account)) == (1, 10)
    assert await sweep.sweep_account(credential.principal_for(slow.account)) == (0, 72)  # the default
    assert _abandoned_total() == before + 1
    swept = await quick.get(quick_session)
    assert swept.status == pb.SESSION_STATUS_ABANDONED
    assert swept.state_version == quick_session.state_version + 1
    assert abs(swept.end_time.ToDatetime(tzinfo=UTC) - clock.now) < timedelta(
        milliseconds=1
    )  # the sweep's clock
    assert swept.closer == str(service_user_id("sessions"))
    assert swept.closer_display_name == "FlowPilot (stale-session sweep)"
    assert swept.abandon_reason.startswith("No change for 10 hours")
    assert (await quick.get(done)).status == pb.SESSION_STATUS_RESOLVED  # only active sessions go stale
    # Idempotent: nothing more to do, nothing changes.
    assert await sweep.sweep_account(credential.principal_for(quick.account)) == (0, 10)
    assert await quick.get(quick_session) == swept
    clock.advance(hours=62)
    assert await sweep.sweep_account(credential.principal_for(slow.account)) == (1, 72)
    assert (await slow.get(slow_session)).status == pb.SESSION_STATUS_ABANDONED


async def test_a_change_keeps_a_session_from_going_stale(
    sessions_channel: grpc.aio.Channel,
    keys: Keys,
    database: RunDatabase,
    sweep_parts: tuple[Database, SettingsReader, ServiceCredential],
) -> None:
    db, settings, credential = sweep_parts
    me = Caller(sessions_channel, keys)
    worked, left = await me.session(), await me.session()
    for session in (worked, left):
        await _backdate(database, session, 80)
    await me.fact(worked, "Still on it")  # a change: its update time moves
    sweep = StaleSessionSweep(db, settings, credential, clock=FakeClock(), batch=500)
    assert await sweep.sweep_account(credential.principal_for(me.account)) == (1, 72)
    assert (await me.get(worked)).status == pb.SESSION_STATUS_ACTIVE
    assert (await me.get(left)).status == pb.SESSION_STATUS_ABANDONED


async def test_one_transaction_abandons_at_most_its_batch(
    sessions_channel: grpc.aio.Channel,
    keys: Keys,
    database: RunDatabase,
    sweep_parts: tuple[Database, SettingsReader, ServiceCredential],
) -> None:
    db, _, _ = sweep_parts
    me = Caller(sessions_channel, keys)
    for _ in range(5):
        await _backdate(database, await me.session(), 100)
    swept = []
    for _ in range(3):
        async with db.transaction(me.account) as conn:
            swept.append(
                await storage.abandon_stale(
                    conn,
                    idle_since=FakeClock().now - timedelta(hours=72),
                    end_time=FakeClock().now,
                    closed_by=SWEEP.id,
                    closed_by_name="sweep",
                    reason="stale",
                    limit=2,
                )
            )
    assert swept == [2, 2, 1]


async def test_a_round_finds_accounts_through_the_narrow_function_and_survives_a_failing_one(
    sessions_channel: grpc.aio.Channel,
    keys: Keys,
    database: RunDatabase,
    sweep_parts: tuple[Database, SettingsReader, ServiceCredential],
) -> None:
    db, settings, credential = sweep_parts
    broken, fine = Caller(sessions_channel, keys), Caller(sessions_channel, keys)
    stale = {}
    for caller in (broken, fine):
        stale[caller.account] = [await caller.session() for _ in range(3)]
        for session in stale[caller.account]:
            await _backdate(database, session, 100)
    fresh = await fine.session()
    sweep = StaleSessionSweep(
        db, RefusingSettings(settings, broken.account), credential, clock=FakeClock(), batch=2
    )
    failures = REGISTRY.get_sample_value("flowpilot_session_sweep_account_failures_total") or 0.0
    runs = REGISTRY.get_sample_value("flowpilot_session_sweep_runs_total", {"outcome": "ok"}) or 0.0
    assert await sweep.sweep_all() >= 3  # fine's three, in two batches (other tests' accounts are not stale)
    assert REGISTRY.get_sample_value("flowpilot_session_sweep_account_failures_total") == failures + 1
    assert REGISTRY.get_sample_value("flowpilot_session_sweep_runs_total", {"outcome": "ok"}) == runs + 1
    assert [(await fine.get(s)).status for s in stale[fine.account]] == [pb.SESSION_STATUS_ABANDONED] * 3
    assert (await fine.get(fresh)).status == pb.SESSION_STATUS_ACTIVE
    assert [(await broken.get(s)).status for s in stale[broken.account]] == [pb.SESSION_STATUS_ACTIVE] * 3
    # The next round, with the settings service back, sweeps what is left.
    healed = StaleSessionSweep(db, settings, credential, clock=FakeClock())
    assert await healed.sweep_all() >= 3
    assert [(await broken.get(s)).status for s in stale[broken.account]] == [pb.SESSION_STATUS_ABANDONED] * 3


async def test_the_definer_function_reveals_only_account_ids(
    sessions_channel: grpc.aio.Channel, keys: Keys, database: RunDatabase
) -> None:
    me, other = Caller(sessions_channel, keys), Caller(sessions_channel, keys)
    old = await me.session()
    await other.session()
    await _backdate(database, old, 2)
    sessions_login = create_async_engine(database.runtime_url("sessions"))
    walks_login = create_async_engine(database.runtime_url("walks"))
    query = text("SELECT * FROM sessions.accounts_with_stale_sessions(now() - interval '1 hour', 10000)")
    try:
        async with sessions_login.connect() as conn:
            result = await conn.execute(query)
            assert list(result.keys()) == ["accounts_with_stale_sessions"]
            accounts = set(result.scalars())
            assert me.account in accounts and other.account not in accounts  # its session is fresh
            # Without a tenant the service's own login sees no session at all.
            assert (await conn.execute(text("SELECT count(*) FROM sessions.ai_sessions"))).scalar_one() == 0
        async with walks_login.connect() as conn:
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(query)
    finally:
        await sessions_login.dispose()
        await walks_login.dispose()


def test_the_service_runs_the_sweep(sessions_server: GrpcServer) -> None:
    names = [work.name for work in sessions_server.background if isinstance(work, Periodic)]
    assert "stale-session-sweep" in names
