"""What a platform engineer does at 3 a.m.: grpcurl against a running service."""

from __future__ import annotations

import json
import uuid

from services.core.auth import Role
from tests.grpcurl import grpcurl
from tests.support import Keys


async def test_list_and_describe_through_reflection(settings_address: str) -> None:
    listed = await grpcurl("-plaintext", settings_address, "list")
    assert listed.code == 0, listed.err
    services = set(listed.out.split())
    assert {"flowpilot.settings.v1.SettingsService", "grpc.health.v1.Health"} <= services
    described = await grpcurl(
        "-plaintext", settings_address, "describe", "flowpilot.settings.v1.SettingsService"
    )
    assert described.code == 0, described.err
    for method in ("GetSetting", "ListSettings", "UpdateSetting", "ResetSetting"):
        assert f"rpc {method}" in described.out
    message = await grpcurl("-plaintext", settings_address, "describe", "flowpilot.settings.v1.Setting")
    assert "google.protobuf.Value value" in message.out


async def test_call_with_token_and_health(settings_address: str, keys: Keys, account: uuid.UUID) -> None:
    token = keys.token(account_id=account, role=Role.TEAM_ADMIN)
    updated = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        '{"setting": {"name": "settings/notes.format", "value": "plain"}}',
        settings_address,
        "flowpilot.settings.v1.SettingsService/UpdateSetting",
    )
    assert updated.code == 0, updated.err
    assert json.loads(updated.out)["value"] == "plain"
    got = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        '{"name": "settings/notes.format"}',
        settings_address,
        "flowpilot.settings.v1.SettingsService/GetSetting",
    )
    assert got.code == 0, got.err
    body = json.loads(got.out)
    assert body["value"] == "plain"
    assert body["name"] == "settings/notes.format"
    health = await grpcurl("-plaintext", settings_address, "grpc.health.v1.Health/Check")
    assert health.code == 0, health.err
    assert json.loads(health.out)["status"] == "SERVING"


async def test_call_without_token_is_refused(settings_address: str) -> None:
    refused = await grpcurl(
        "-plaintext",
        "-d",
        '{"name": "settings/notes.format"}',
        settings_address,
        "flowpilot.settings.v1.SettingsService/GetSetting",
    )
    assert refused.code != 0
    assert "Unauthenticated" in refused.err
    assert "missing bearer token" in refused.err
