"""The settings every service reads: cached per account for a short time, bounded."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2
from google.protobuf import struct_pb2

from services.core.ai import Prompts
from services.core.auth import Principal, Role, bind_principal, unbind_principal
from services.core.clients import PromptReader, SettingsReader
from services.core.errors import Unavailable


class Stub:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: grpc.StatusCode | None = None

    async def ListSettings(self, request: Any, **kwargs: Any) -> settings_pb2.ListSettingsResponse:
        self.calls += 1
        if self.fail is not None:
            raise grpc.aio.AioRpcError(self.fail, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")
        value = struct_pb2.Value(string_value=f"v{self.calls}")
        return settings_pb2.ListSettingsResponse(
            settings=[settings_pb2.Setting(name="settings/notes.format", value=value)]
        )


async def test_values_are_cached_per_account_until_the_ttl_passes() -> None:
    stub, now = Stub(), [0.0]
    reader = SettingsReader(stub, ttl_seconds=10, clock=lambda: now[0])  # type: ignore[arg-type]

    async def read(account: uuid.UUID) -> Any:
        token = bind_principal(
            Principal(user_id=uuid.uuid4(), account_id=account, role=Role.VIEWER, token="t")
        )
        try:
            return (await reader.values())["notes.format"]
        finally:
            unbind_principal(token)

    first, second = uuid.uuid4(), uuid.uuid4()
    assert await read(first) == "v1"
    assert await read(first) == "v1" and stub.calls == 1
    assert await read(second) == "v2"  # each account its own
    now[0] = 10.5
    assert await read(first) == "v3"
    stub.fail = grpc.StatusCode.CANCELLED  # e.g. the settings service shutting down
    now[0] = 30
    with pytest.raises(Unavailable):
        await read(first)


async def test_typed_values_come_from_the_service_and_a_missing_key_is_an_error() -> None:
    """Defaults live in the settings catalogue only: the service answers every
    key, so a key it did not answer is a fault, never a silent default here."""
    from services.core.errors import Internal

    reader = SettingsReader(Stub(), ttl_seconds=10)  # type: ignore[arg-type]
    token = bind_principal(
        Principal(user_id=uuid.uuid4(), account_id=uuid.uuid4(), role=Role.VIEWER, token="t")
    )
    try:
        assert await reader.choice("notes.format") == "v1"
        with pytest.raises(Internal):
            await reader.flag("library.auto_draft_scripts")
    finally:
        unbind_principal(token)


class PromptStub:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: grpc.StatusCode | None = None

    async def ListPrompts(self, request: Any, **kwargs: Any) -> settings_pb2.ListPromptsResponse:
        self.calls.append(kwargs["metadata"])
        if self.fail is not None:
            raise grpc.aio.AioRpcError(self.fail, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")
        return settings_pb2.ListPromptsResponse(
            prompts=[settings_pb2.Prompt(name="prompts/task.note", text=f"v{len(self.calls)}", version=2)]
        )


async def test_prompts_are_cached_read_with_the_callers_token_and_never_fail_a_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub, now = PromptStub(), [0.0]
    reader = PromptReader(stub, ttl_seconds=10, clock=lambda: now[0])  # type: ignore[arg-type]
    token = bind_principal(
        Principal(user_id=uuid.uuid4(), account_id=uuid.uuid4(), role=Role.ENGINEER, token="callers-token")
    )
    try:
        first = await reader.prompts()
        assert first.text("task.note", "built in") == "v1" and first.version("task.note") == 2
        assert first.text("system", "built in") == "built in" and first.version("system") == 1
        assert (await reader.prompts()) == first and len(stub.calls) == 1
        assert ("authorization", "Bearer callers-token") in stub.calls[0]
        # The settings service down: the built-in texts, logged once, not cached.
        stub.fail, now[0] = grpc.StatusCode.UNAVAILABLE, 11
        with caplog.at_level("WARNING", logger="flowpilot.clients"):
            assert await reader.prompts() == Prompts()
            stub.fail = grpc.StatusCode.PERMISSION_DENIED
            assert await reader.prompts() == Prompts()
        assert len([r for r in caplog.records if "reading prompts failed" in r.getMessage()]) == 1
        stub.fail = None
        assert (await reader.prompts()).text("task.note", "") == "v4"
    finally:
        unbind_principal(token)
