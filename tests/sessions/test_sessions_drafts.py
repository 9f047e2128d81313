"""Resolved sessions become draft templates in the library, through the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai import AI
from services.core.ai.offline import OfflineBackend
from services.core.auth import Role
from services.core.background import Periodic
from services.core.server import GrpcServer
from services.library.service import LibraryConfig
from services.library.service import build as build_library
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from tests.conftest import service_config_kwargs
from tests.sessions.helpers import Caller
from tests.support import Keys, RunDatabase, admin_scalar, free_port, running, until


async def _resolved_with_scripts(me: Caller, *, extra_failed: bool = True) -> pb.Session:
    s = await me.session()
    for title, body, language, status in (
        (
            "Restart spooler",
            "Restart-Service spooler",
            pb.SCRIPT_LANGUAGE_POWERSHELL,
            pb.LANE_ITEM_STATUS_DONE,
        ),
        ("Flush DNS", "ipconfig /flushdns", pb.SCRIPT_LANGUAGE_CMD, pb.LANE_ITEM_STATUS_DONE),
        (
            "Broken",
            "exit 1",
            pb.SCRIPT_LANGUAGE_BASH,
            pb.LANE_ITEM_STATUS_FAILED if extra_failed else pb.LANE_ITEM_STATUS_PENDING,
        ),
    ):
        item = await me.lane_item(
            s, kind=pb.LANE_ITEM_KIND_SCRIPT, title=title, script_body=body, script_language=language
        )
        await me.call(
            "UpdateLaneItem", pb.UpdateLaneItemRequest(lane_item=pb.LaneItem(name=item.name, status=status))
        )
    await me.lane_item(s, title="A check, not a script")
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Fixed"))
    return s


async def _list_drafts(channel: grpc.aio.Channel, me: Caller) -> list[library_pb2.DraftTemplate]:
    stub = library_pb2_grpc.LibraryServiceStub(channel)
    md = me.keys.metadata(account_id=me.account, role=Role.VIEWER)
    listed = await stub.ListDraftTemplates(library_pb2.ListDraftTemplatesRequest(), metadata=md)
    return list(listed.draft_templates)


async def _drafts(
    channel: grpc.aio.Channel, me: Caller, *, want: int, seconds: float = 10.0
) -> list[library_pb2.DraftTemplate]:
    """The account's drafts once there are ``want`` of them: the outbox worker
    delivers them after the resolve (polled, bounded)."""
    drafts: list[library_pb2.DraftTemplate] = []

    async def arrived() -> bool:
        nonlocal drafts
        drafts = await _list_drafts(channel, me)
        return len(drafts) >= want

    await until(arrived, what=f"{want} drafts delivered", seconds=seconds, every=0.05)
    return drafts


@asynccontextmanager
async def _worker_paused(server: GrpcServer) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The sessions server's outbox worker stopped (a round it was in is
    cancelled: its rows stay claimed until their lease ends), restarted at the
    end; yields one delivery round to run by hand."""
    [delivery] = [w for w in server.background if isinstance(w, Periodic) and w.name == "outbox-delivery"]
    for work in server.background:
        await work.stop()
    try:
        yield delivery.run_round
    finally:
        for work in server.background:
            work.start()


@pytest.fixture
def me(sessions_channel: grpc.aio.Channel, keys: Keys) -> Caller:
    return Caller(sessions_channel, keys)


async def test_resolve_turns_successful_scripts_into_drafts(
    me: Caller,
    library_channel: grpc.aio.Channel,
    database: RunDatabase,
    spans: InMemorySpanExporter,
    sessions_server: GrpcServer,
) -> None:
    me = me.named("Dana Engineer")
    s = await _resolved_with_scripts(me)
    drafts = await _drafts(library_channel, me, want=2)
    assert sorted(d.suggested_name for d in drafts) == ["Flush DNS", "Restart spooler"]
    for draft in drafts:
        assert draft.status == library_pb2.DRAFT_STATUS_PENDING
        assert draft.provenance.session == s.name
        assert draft.provenance.ticket_ref == s.ticket_ref
        assert draft.provenance.user == str(me.user)
        assert draft.provenance.user_display_name == "Dana Engineer"  # the chip names the person
        assert draft.provenance.lane_item.startswith(s.name + "/laneItems/")
    # Redelivery (as after a crash between the call and the commit, once the
    # claim's lease has run out) changes nothing. The worker is paused and one
    # delivery round run here: nothing else touches the rows meanwhile.
    rows = {"s": s.name.split("/")[1] + "/%"}
    admin = create_async_engine(database.admin_url)
    try:
        async with _worker_paused(sessions_server) as deliver:
            async with admin.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE sessions.outbox SET deliver_time = NULL, next_attempt_time = now() WHERE dedupe_key LIKE :s"
                    ),
                    rows,
                )
            await deliver()
        async with admin.connect() as conn:
            delivered = (
                await conn.execute(
                    text(
                        "SELECT bool_and(deliver_time IS NOT NULL) FROM sessions.outbox WHERE dedupe_key LIKE :s"
                    ),
                    rows,
                )
            ).scalar_one()
    finally:
        await admin.dispose()
    assert delivered
    assert len(await _list_drafts(library_channel, me)) == 2
    # Resolving again is refused and queues nothing.
    with pytest.raises(grpc.aio.AioRpcError):
        await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="again"))
    # The delivery continued the resolve's trace into the library.
    resolve = [
        x
        for x in spans.get_finished_spans()
        if x.kind is SpanKind.SERVER and x.name.endswith("/ResolveSession")
    ]
    imports = [
        x
        for x in spans.get_finished_spans()
        if x.kind is SpanKind.SERVER and x.name.endswith("/ImportSessionScripts")
    ]
    assert {x.context.trace_id for x in resolve} & {x.context.trace_id for x in imports}


async def test_no_drafts_when_the_setting_is_off(
    me: Caller, settings_channel: grpc.aio.Channel, library_channel: grpc.aio.Channel, database: RunDatabase
) -> None:
    await settings_pb2_grpc.SettingsServiceStub(settings_channel).UpdateSetting(
        settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/library.auto_draft_scripts", value=struct_pb2.Value(bool_value=False)
            )
        ),
        metadata=me.as_role(Role.TEAM_ADMIN).md,
    )
    s = await _resolved_with_scripts(me)
    # The resolve queued nothing in its transaction, so nothing is ever delivered.
    queued = "SELECT count(*) FROM sessions.outbox WHERE dedupe_key LIKE :s"
    assert await admin_scalar(database, queued, s=s.name.split("/")[1] + "/%") == 0
    assert await _list_drafts(library_channel, me) == []


@pytest.fixture
async def sessions_without_library(
    database: RunDatabase, keys: Keys, settings_address: str, service_keys: dict[str, Keys]
) -> AsyncIterator[tuple[grpc.aio.Channel, int]]:
    library_port = free_port()
    config = SessionsConfig(
        **service_config_kwargs(database, keys, "sessions", service_keys),
        settings_address=settings_address,
        library_address=f"127.0.0.1:{library_port}",
        outbox_poll_seconds=0.1,
        outbox_base_backoff_seconds=0.05,
        outbox_max_backoff_seconds=0.2,
    )
    async with (
        running(build_sessions, config, pool_size=4, ai=AI(OfflineBackend())) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel, library_port


@pytest.mark.usefixtures("only_this_replica_delivers")
async def test_library_down_during_resolve_loses_nothing(
    sessions_without_library: tuple[grpc.aio.Channel, int],
    keys: Keys,
    database: RunDatabase,
    service_keys: dict[str, Keys],
    settings_address: str,
) -> None:
    channel, library_port = sessions_without_library
    me = Caller(channel, keys)
    s = await _resolved_with_scripts(me)
    assert (await me.get(s)).status == pb.SESSION_STATUS_RESOLVED
    admin = create_async_engine(database.admin_url)
    key = s.name.split("/")[1] + "/%"  # one row per script
    for _ in range(50):
        async with admin.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT min(attempts) AS attempts, min(last_error) AS last_error,"
                        " max(deliver_time) AS deliver_time FROM sessions.outbox WHERE dedupe_key LIKE :k"
                    ),
                    {"k": key},
                )
            ).one()
        if row.attempts >= 2:
            break
        await asyncio.sleep(0.1)
    assert row.attempts >= 2 and row.deliver_time is None and row.last_error.startswith("UNAVAILABLE")
    # The library comes back on its address: the drafts arrive.
    config = LibraryConfig(
        **{**service_config_kwargs(database, keys, "library", service_keys), "port": library_port},
        settings_address=settings_address,
    )
    try:
        async with (
            running(build_library, config, pool_size=2, ai=AI(OfflineBackend())),
            grpc.aio.insecure_channel(f"127.0.0.1:{library_port}") as library_channel,
        ):
            drafts = await _drafts(library_channel, me, want=2, seconds=15)
        assert sorted(d.suggested_name for d in drafts) == ["Flush DNS", "Restart spooler"]
    finally:
        await admin.dispose()


async def test_due_accounts_function_reveals_only_account_ids(database: RunDatabase, me: Caller) -> None:
    sessions_login = create_async_engine(database.runtime_url("sessions"))
    library_login = create_async_engine(database.runtime_url("library"))
    try:
        async with sessions_login.connect() as conn:
            columns = (await conn.execute(text("SELECT * FROM sessions.outbox_accounts_due(10)"))).keys()
            assert list(columns) == ["outbox_accounts_due"]
            # Without a tenant the table itself shows nothing.
            assert (await conn.execute(text("SELECT count(*) FROM sessions.outbox"))).scalar_one() == 0
            await conn.rollback()
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text(f'SET ROLE "{database.roles.maintenance}"'))
        async with library_login.connect() as conn:
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text("SELECT * FROM sessions.outbox_accounts_due(10)"))
    finally:
        await sessions_login.dispose()
        await library_login.dispose()
