"""Readiness follows the database, for real: a service on a PostgreSQL of
this test's own goes NOT_SERVING when the server is stopped and SERVING when
it is back, its liveness stays SERVING throughout, and the gateway's
``/readyz`` answers 503, then 200 (``/healthz`` 200 throughout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import httpx
import pgserver
import pytest
from flowpilot.settings.v1 import settings_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from services.settings.service import SERVICE_NAME, SettingsConfig, build
from tests.conftest import service_config_kwargs
from tests.gateway.harness import serve_gateway
from tests.support import Keys, RunDatabase, own_postgres, pg_ctl, running

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
async def stoppable() -> AsyncIterator[tuple[RunDatabase, pgserver.PostgresServer]]:
    async with own_postgres("fph") as found:
        yield found


def stop(server: pgserver.PostgresServer) -> None:
    pg_ctl(server, "stop")


def start(server: pgserver.PostgresServer) -> None:
    server.ensure_postgres_running()  # same socket and options as at first start


async def eventually(probe: Callable[[], Awaitable[object]], expected: object, seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        seen = await probe()
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {expected!r}, still {seen!r} after {seconds} s")


async def test_readiness_follows_the_database_and_liveness_does_not(
    stoppable: tuple[RunDatabase, pgserver.PostgresServer], keys: Keys
) -> None:
    database, server = stoppable
    config = SettingsConfig(
        **service_config_kwargs(database, keys, "settings"),
        db_check_interval_seconds=0.2,
        db_check_timeout_seconds=1.0,
        db_check_failures=2,
    )
    async with running(build, config, pool_size=2) as service:
        address = f"127.0.0.1:{service.port}"
        services = [settings_pb2.DESCRIPTOR.services_by_name["SettingsService"]]
        async with (
            grpc.aio.insecure_channel(address) as channel,
            serve_gateway(backends={"flowpilot.settings.v1": address}, services=services) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            health = health_pb2_grpc.HealthStub(channel)

            async def status(name: str) -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=3)
                return int(reply.status)

            async def readyz() -> int:
                return (await http.get("/readyz")).status_code

            def ready_gauge() -> float | None:
                return REGISTRY.get_sample_value("flowpilot_database_ready", {"service": "settings"})

            for name in ("", SERVICE_NAME, "liveness"):
                assert await status(name) == SERVING
            assert await readyz() == 200
            assert ready_gauge() == 1

            await asyncio.to_thread(stop, server)
            try:
                await eventually(lambda: status(""), NOT_SERVING)
                assert await status(SERVICE_NAME) == NOT_SERVING
                assert await status("liveness") == SERVING  # a restart would not bring the database back
                await eventually(readyz, 503)
                body = (await http.get("/readyz")).json()
                assert body["backends"] == {"flowpilot.settings.v1": "NOT_SERVING"}
                assert (await http.get("/healthz")).status_code == 200
                assert ready_gauge() == 0
            finally:
                await asyncio.to_thread(start, server)

            await eventually(lambda: status(""), SERVING)
            assert await status(SERVICE_NAME) == SERVING
            await eventually(readyz, 200)
            assert ready_gauge() == 1


async def test_one_failed_check_is_not_enough_and_start_decides(
    stoppable: tuple[RunDatabase, pgserver.PostgresServer], keys: Keys
) -> None:
    """Below the threshold readiness holds; a check that fails at start (no
    evidence the database works) is NOT_SERVING at once; 0 turns checks off."""
    from services.core.health import DatabaseCheck

    changes: list[bool] = []

    async def record(ready: bool) -> None:
        changes.append(ready)

    outcomes = iter([None, OSError("down"), None, OSError("down"), OSError("down"), None])

    class Conn:
        def is_closed(self) -> bool:
            return False

        async def fetchval(self, query: str) -> int:
            outcome = next(outcomes)
            if outcome is not None:
                raise outcome
            return 1

        def terminate(self) -> None:
            pass

    async def connect() -> Conn:
        return Conn()

    check = DatabaseCheck(connect, record, service="unit", failures=2)
    assert [await check.check() for _ in range(6)] == [True, True, True, True, False, True]
    assert changes == [True, False, True]

    failing = DatabaseCheck(_refused, record, service="unit", failures=5)
    assert await failing.check() is False  # the first check decides
    assert changes[-1] is False

    database, _ = stoppable
    off = SettingsConfig(**service_config_kwargs(database, keys, "settings"), db_check_interval_seconds=0)
    async with running(build, off, pool_size=1) as service:
        assert service.database_check is None


async def _refused() -> object:
    raise ConnectionRefusedError("refused")
