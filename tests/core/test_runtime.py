"""The shared runtime around every RPC: auth, roles, errors, health, shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.auth import Role, generate_keypair
from services.core.db import Database
from services.core.errors import FailedPrecondition
from services.core.server import GrpcServer
from services.settings.service import DOMAIN, SERVICE_NAME, SettingsConfig, build
from services.settings.servicer import SettingsServicer
from tests.conftest import service_config_kwargs
from tests.support import AUDIENCE, ISSUER, Keys, RunDatabase, failure, running

GET = settings_pb2.GetSettingRequest(name="settings/notes.format")


def _bad_tokens(keys: Keys, account: uuid.UUID) -> dict[str, str]:
    other_private, _ = generate_keypair()
    now = int(time.time())
    base = {
        "sub": str(uuid.uuid4()),
        "account_id": str(account),
        "role": "viewer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }

    def sign(claims: dict[str, object], key: str = keys.private_pem) -> str:
        return "Bearer " + jwt.encode(claims, key, algorithm="EdDSA")

    return {
        "missing": "",
        "not bearer": "Basic dXNlcjpwYXNz",
        "empty bearer": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "other key": sign(base, other_private),
        "expired": sign({**base, "exp": now - 3600, "iat": now - 7200}),
        "wrong audience": sign({**base, "aud": "someone-else"}),
        "wrong issuer": sign({**base, "iss": "someone-else"}),
        "no exp": sign({k: v for k, v in base.items() if k != "exp"}),
        "no iat": sign({k: v for k, v in base.items() if k != "iat"}),
        "lives for ever": sign({**base, "exp": 10**30}),
        "account id in braces": sign({**base, "account_id": "{" + str(account) + "}"}),
        "account id upper case": sign({**base, "account_id": str(account).upper()}),
        "sub as a URN": sign({**base, "sub": "urn:uuid:" + str(uuid.uuid4())}),
        "sub not uuid": sign({**base, "sub": "alice"}),
        "no account": sign({k: v for k, v in base.items() if k != "account_id"}),
        "unknown role": sign({**base, "role": "root"}),
        "hs256 with public key": "Bearer " + jwt.encode(base, "x" * 32, algorithm="HS256"),
        "user issuer claiming service": sign({**base, "role": "service"}),
        "service issuer unknown": sign({**base, "iss": "flowpilot-service:nobody", "role": "service"}),
    }


async def test_bad_tokens_are_unauthenticated(
    settings_channel: grpc.aio.Channel, keys: Keys, account: uuid.UUID
) -> None:
    stub = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    for label, header in _bad_tokens(keys, account).items():
        metadata = (("authorization", header),) if header else ()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSetting(GET, metadata=metadata)
        error = failure(caught.value)
        assert error.code is grpc.StatusCode.UNAUTHENTICATED, label
        assert error.reason == "UNAUTHENTICATED", label
        secret = header.split(" ")[-1]
        assert len(secret) < 20 or secret not in error.message, label  # never echoed


async def test_health_is_open_and_serving(settings_channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(settings_channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


class _Exploding(SettingsServicer):
    """Fails the ways handlers can fail, to check what the caller sees."""

    async def GetSetting(self, request, context):
        if request.name.endswith("crash"):
            raise RuntimeError("SELECT secret FROM sessions.ai_sessions WHERE password='hunter2'")
        raise FailedPrecondition(
            "session is resolved", reason="SESSION_NOT_ACTIVE", metadata={"status": "resolved"}
        )


@pytest.fixture
async def exploding(
    database: RunDatabase, keys: Keys
) -> AsyncIterator[tuple[settings_pb2_grpc.SettingsServiceStub, GrpcServer]]:
    config = SettingsConfig(**service_config_kwargs(database, keys, "settings"))
    async with (
        running(build, config, pool_size=2, servicer_type=_Exploding) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield settings_pb2_grpc.SettingsServiceStub(channel), server


async def test_unexpected_errors_are_internal_without_detail(
    exploding, keys: Keys, account: uuid.UUID
) -> None:
    stub, _ = exploding
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSetting(
            settings_pb2.GetSettingRequest(name="settings/crash"),
            metadata=keys.metadata(account_id=account, role=Role.VIEWER),
        )
    error = failure(caught.value)
    assert error.code is grpc.StatusCode.INTERNAL
    assert error.message.startswith("internal error")
    assert "secret" not in error.message and "hunter2" not in error.message and "SELECT" not in error.message
    assert "Traceback" not in (caught.value.debug_error_string() or "")


async def test_domain_errors_carry_reason_domain_and_metadata(
    exploding, keys: Keys, account: uuid.UUID
) -> None:
    stub, _ = exploding
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSetting(GET, metadata=keys.metadata(account_id=account, role=Role.VIEWER))
    error = failure(caught.value)
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (error.reason, error.domain) == ("SESSION_NOT_ACTIVE", DOMAIN)


class _Slow(SettingsServicer):
    started: asyncio.Event

    async def GetSetting(self, request, context):
        self.started.set()
        await asyncio.sleep(1.5)
        return await super().GetSetting(request, context)


async def test_graceful_shutdown_finishes_in_flight_rpcs(
    database: RunDatabase, keys: Keys, account: uuid.UUID
) -> None:
    config = SettingsConfig(
        **{
            **service_config_kwargs(database, keys, "settings"),
            "shutdown_drain_seconds": 0.5,
            "shutdown_grace_seconds": 5,
        }
    )
    _Slow.started = asyncio.Event()
    server = build(config, Database.connect(config.database_url, pool_size=2), servicer_type=_Slow)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        in_flight = asyncio.ensure_future(
            stub.GetSetting(GET, metadata=keys.metadata(account_id=account, role=Role.VIEWER))
        )
        await _Slow.started.wait()
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.1)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        setting = await in_flight
        assert setting.value.string_value == "markdown"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSetting(
                GET, metadata=keys.metadata(account_id=account, role=Role.VIEWER), timeout=2
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


class _Counting(SettingsServicer):
    """UpdateSetting that records how many calls it runs at once."""

    running = 0
    most = 0

    async def UpdateSetting(self, request, context):
        type(self).running += 1
        type(self).most = max(type(self).most, type(self).running)
        try:
            await asyncio.sleep(0.3)
        finally:
            type(self).running -= 1
        return await super().UpdateSetting(request, context)


async def test_large_requests_are_handled_one_at_a_time(database: RunDatabase, keys: Keys) -> None:
    """Memory: a request past LARGE_REQUEST_BYTES decodes into many times its
    size; they take turns, while small requests still run side by side."""
    from google.protobuf import struct_pb2

    from services.core.rpc import LARGE_REQUEST_BYTES

    config = SettingsConfig(**service_config_kwargs(database, keys, "settings"))
    server = build(config, Database.connect(config.database_url, pool_size=4), servicer_type=_Counting)
    port = await server.start()
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)

    def update(size: int) -> settings_pb2.UpdateSettingRequest:
        value = struct_pb2.Value(string_value="x" * size)
        return settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(name="settings/notes.format", value=value)
        )

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            for size, expected in ((LARGE_REQUEST_BYTES + 1, 1), (10, 3)):
                _Counting.most = 0
                results = await asyncio.gather(
                    *(stub.UpdateSetting(update(size), metadata=md, timeout=20) for _ in range(3)),
                    return_exceptions=True,
                )
                # The value is no format the catalogue knows: refused, after the handler ran.
                assert all(isinstance(r, grpc.aio.AioRpcError) for r in results), results
                assert _Counting.most == expected, (size, _Counting.most)
    finally:
        await server.stop()
