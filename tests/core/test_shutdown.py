"""A real service process on SIGTERM: health turns NOT_SERVING, the RPC in
flight finishes, the process exits cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from typing import Any

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role
from tests.support import Keys, RunDatabase, free_port, service_process_env

pytestmark = pytest.mark.slow  # `make test-fast` skips it


async def test_sigterm_lets_the_rpc_in_flight_finish(database: RunDatabase, keys: Keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = service_process_env(
        database, keys, tmp_path, "settings", port, FLOWPILOT_SHUTDOWN_DRAIN_SECONDS="3"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.settings", env=env)
    account = uuid.uuid4()
    md = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    admin = create_async_engine(database.admin_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            update = settings_pb2.UpdateSettingRequest(
                setting=settings_pb2.Setting(
                    name="settings/notes.format", value=struct_pb2.Value(string_value="plain")
                )
            )
            await stub.UpdateSetting(update, metadata=md)  # the account's row exists
            async with admin.connect() as lock:
                # Hold the row: the next update waits on it, in flight, when SIGTERM comes.
                await lock.execute(text("BEGIN"))
                await lock.execute(
                    text("SELECT 1 FROM settings.account_settings WHERE account_id = :a FOR UPDATE"),
                    {"a": account},
                )
                in_flight = asyncio.ensure_future(stub.UpdateSetting(update, metadata=md, timeout=20))
                await asyncio.sleep(0.5)
                process.send_signal(signal.SIGTERM)
                for _ in range(40):  # within the 3-second drain
                    status = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    if status.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        break
                    await asyncio.sleep(0.05)
                assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
                assert not in_flight.done()
                await lock.execute(text("ROLLBACK"))
            finished = await in_flight
            assert finished.value.string_value == "plain"
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await admin.dispose()


async def test_several_workers_share_one_port(database: RunDatabase, keys: Keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psutil

    port = free_port()
    env = service_process_env(database, keys, tmp_path, "settings", port, FLOWPILOT_WORKERS="2")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.settings", env=env)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        listening: set[int] = set()
        while asyncio.get_running_loop().time() < deadline and len(listening) < 2:
            listening = {
                c.pid
                for c in psutil.Process(process.pid).children()
                if any(
                    conn.laddr.port == port and conn.status == psutil.CONN_LISTEN
                    for conn in c.net_connections()
                )
            }
            await asyncio.sleep(0.2)
        assert len(listening) == 2
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            got = await stub.GetSetting(
                settings_pb2.GetSettingRequest(name="settings/notes.format"),
                metadata=keys.metadata(account_id=uuid.uuid4(), role=Role.VIEWER),
                wait_for_ready=True,
                timeout=20,
            )
            assert got.value.string_value == "markdown"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _hammer(
    stub: Any,
    md: tuple[tuple[str, str], ...],
    codes: dict[str, int],
    stop: asyncio.Event,
) -> None:
    request = settings_pb2.GetSettingRequest(name="settings/notes.format")
    while not stop.is_set():
        try:
            await stub.GetSetting(request, metadata=md, timeout=3)
            code = "OK"
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        codes[code] = codes.get(code, 0) + 1


async def test_calls_refused_during_shutdown_are_unavailable(
    database: RunDatabase, keys: Keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Clients that keep calling through SIGTERM see answers or UNAVAILABLE
    (which they retry), never CANCELLED — also the calls that arrive exactly
    as the process goes."""
    codes: dict[str, int] = {}
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.VIEWER)
    for _ in range(5):  # grpc-core's own stop gave ~4 CANCELLED per 5
        port = free_port()
        env = service_process_env(
            database, keys, tmp_path, "settings", port, FLOWPILOT_SHUTDOWN_DRAIN_SECONDS="0.3"
        )
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.settings", env=env)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30
                )
                stub = settings_pb2_grpc.SettingsServiceStub(channel)
                stop = asyncio.Event()
                callers = [asyncio.ensure_future(_hammer(stub, md, codes, stop)) for _ in range(6)]
                await asyncio.sleep(0.5)
                process.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(process.wait(), 20) == 0
                await asyncio.sleep(0.3)  # calls after the exit: refused at connect
                stop.set()
                await asyncio.gather(*callers)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert codes.get("OK", 0) > 0 and codes.get("UNAVAILABLE", 0) > 0
    assert set(codes) == {"OK", "UNAVAILABLE"}, codes
