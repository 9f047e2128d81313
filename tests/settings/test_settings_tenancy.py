"""Tenant isolation of settings through the API and in the database itself."""

from __future__ import annotations

import uuid

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role
from services.settings.storage import READ_PREFERENCES
from tests.support import Keys, RunDatabase


async def test_account_b_never_sees_or_changes_a(settings_channel: grpc.aio.Channel, keys: Keys) -> None:
    stub = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    a, b = uuid.uuid4(), uuid.uuid4()
    a_admin = keys.metadata(account_id=a, role=Role.TEAM_ADMIN)
    b_admin = keys.metadata(account_id=b, role=Role.TEAM_ADMIN)
    a_set = await stub.UpdateSetting(
        settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/notes.format", value=struct_pb2.Value(string_value="html")
            )
        ),
        metadata=a_admin,
    )
    b_view = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.format"), metadata=b_admin
    )
    assert b_view.value.string_value == "markdown"
    assert b_view.default is True
    # B's write with A's etag cannot touch A's row: it is stale for B.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            settings_pb2.UpdateSettingRequest(
                setting=settings_pb2.Setting(
                    name="settings/notes.format",
                    value=struct_pb2.Value(string_value="plain"),
                    etag=a_set.etag,
                )
            ),
            metadata=b_admin,
        )
    assert caught.value.code() is grpc.StatusCode.ABORTED
    await stub.ResetSetting(settings_pb2.ResetSettingRequest(name="settings/notes.format"), metadata=b_admin)
    a_view = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.format"), metadata=a_admin
    )
    assert a_view.value.string_value == "html"
    assert a_view.etag == a_set.etag


async def _seed(database: RunDatabase, account: uuid.UUID) -> None:
    engine = create_async_engine(database.runtime_url("settings"))
    async with engine.begin() as conn:
        await conn.execute(text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(account)})
        await conn.execute(
            text("INSERT INTO settings.account_settings (account_id, preferences) VALUES (:a, '{}')"),
            {"a": account},
        )
    await engine.dispose()


async def test_runtime_role_without_tenant_sees_nothing_and_cannot_write(
    database: RunDatabase,
) -> None:
    account = uuid.uuid4()
    await _seed(database, account)
    engine = create_async_engine(database.runtime_url("settings"))
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM settings.account_settings"))).scalar_one()
            assert count == 0
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(
                    text("INSERT INTO settings.account_settings (account_id) VALUES (:a)"),
                    {"a": uuid.uuid4()},
                )
            await conn.rollback()
            # An empty setting is no tenant either.
            await conn.execute(text("SELECT set_config('app.current_account_id', '', false)"))
            count = (await conn.execute(text("SELECT count(*) FROM settings.account_settings"))).scalar_one()
            assert count == 0
            await conn.rollback()
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(account)}
            )
            seen = (
                (await conn.execute(text("SELECT account_id FROM settings.account_settings"))).scalars().all()
            )
            assert seen == [account]
            # WITH CHECK: a row for another account cannot be written, nor moved there.
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(
                    text("UPDATE settings.account_settings SET account_id = :b"),
                    {"b": uuid.uuid4()},
                )
    finally:
        await engine.dispose()


async def test_pooled_connection_carries_no_tenant_after_a_request(database: RunDatabase) -> None:
    from services.core.db import Database

    account = uuid.uuid4()
    await _seed(database, account)
    db = Database.connect(database.runtime_url("settings"), pool_size=1, read_pool_size=1)
    try:
        async with db.transaction(account) as conn:
            assert (
                await conn.execute(text("SELECT count(*) FROM settings.account_settings"))
            ).scalar_one() == 1
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        # A request that fails mid-transaction.
        with pytest.raises(DBAPIError):
            async with db.transaction(account) as conn:
                await conn.execute(text("SELECT 1/0"))
        # The same pooled connection (pool of one) now has no tenant.
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == backend
            leftover = (
                await conn.execute(text("SELECT current_setting('app.current_account_id', true)"))
            ).scalar_one()
            assert leftover in (None, "")
            assert (
                await conn.execute(text("SELECT count(*) FROM settings.account_settings"))
            ).scalar_one() == 0
        # A tenant read function sets the tenant for its own call only: its
        # connection (one for reads) has none afterwards and sees no rows.
        assert len(await db.read(READ_PREFERENCES, account)) == 1
        [after] = await db.reads.fetch(
            "SELECT current_setting('app.current_account_id', true) AS tenant,"
            " (SELECT count(*) FROM settings.account_settings) AS visible"
        )
        assert after["tenant"] in (None, "")
        assert after["visible"] == 0
        assert db.reads.open == 1
    finally:
        await db.dispose()
