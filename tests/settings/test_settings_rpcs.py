"""Settings RPCs over a real channel against real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import uuid

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import field_mask_pb2, struct_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role, ServiceCredential
from services.settings.catalogue import CATALOGUE
from tests.support import AUDIENCE, ROOT, Keys, RunDatabase, failure


@pytest.fixture
def stub(settings_channel: grpc.aio.Channel) -> settings_pb2_grpc.SettingsServiceStub:
    return settings_pb2_grpc.SettingsServiceStub(settings_channel)


def _update(name: str, value: struct_pb2.Value, etag: str = "") -> settings_pb2.UpdateSettingRequest:
    return settings_pb2.UpdateSettingRequest(setting=settings_pb2.Setting(name=name, value=value, etag=etag))


async def test_get_returns_default_without_a_row(stub, keys: Keys, account: uuid.UUID) -> None:
    setting = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.format"),
        metadata=keys.metadata(account_id=account, role=Role.VIEWER),
    )
    assert setting.value.string_value == "markdown"
    assert setting.default is True
    assert setting.etag == "0"
    assert not setting.HasField("update_time")
    assert list(setting.allowed_values) == ["markdown", "plain", "html"]
    assert setting.value_type == settings_pb2.VALUE_TYPE_ENUM


async def test_update_creates_row_lazily_then_reads_back(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    updated = await stub.UpdateSetting(
        _update("settings/walks.stale_after_hours", struct_pb2.Value(number_value=12)),
        metadata=admin,
    )
    assert updated.value.number_value == 12
    assert updated.default is False
    assert updated.HasField("update_time")
    assert updated.etag != "0"
    read = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/walks.stale_after_hours"),
        metadata=keys.metadata(account_id=account, role=Role.VIEWER),
    )
    assert read.value.number_value == 12
    assert read.etag == updated.etag
    # Other keys still read their defaults.
    other = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.redact_sensitive"), metadata=admin
    )
    assert other.value.bool_value is True
    assert other.default is True


async def test_update_with_explicit_value_mask(stub, keys: Keys, account: uuid.UUID) -> None:
    request = _update("settings/notes.format", struct_pb2.Value(string_value="html"))
    request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=["value"]))
    updated = await stub.UpdateSetting(
        request, metadata=keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    )
    assert updated.value.string_value == "html"


async def test_reset_returns_to_default(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    changed = await stub.UpdateSetting(
        _update("settings/notes.redact_sensitive", struct_pb2.Value(bool_value=False)),
        metadata=admin,
    )
    assert changed.value.bool_value is False
    reset = await stub.ResetSetting(
        settings_pb2.ResetSettingRequest(name="settings/notes.redact_sensitive", etag=changed.etag),
        metadata=admin,
    )
    assert reset.value.bool_value is True
    assert reset.default is True
    assert reset.etag not in ("0", changed.etag)
    # The old etag is now stale for a write.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            _update("settings/notes.redact_sensitive", struct_pb2.Value(bool_value=False), changed.etag),
            metadata=admin,
        )
    assert failure(caught.value).code is grpc.StatusCode.ABORTED


async def test_list_returns_every_key_with_effective_values(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    await stub.UpdateSetting(
        _update("settings/ai.model_tier", struct_pb2.Value(string_value="deep")), metadata=admin
    )
    listed = await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin)
    names = [s.name for s in listed.settings]
    assert names == sorted(f"settings/{k}" for k in CATALOGUE)
    by_name = {s.name: s for s in listed.settings}
    assert by_name["settings/ai.model_tier"].value.string_value == "deep"
    assert by_name["settings/ai.model_tier"].default is False
    assert all(s.default for n, s in by_name.items() if n != "settings/ai.model_tier")
    assert listed.next_page_token == ""


async def test_list_pages_with_tokens(stub, keys: Keys, account: uuid.UUID) -> None:
    viewer = keys.metadata(account_id=account, role=Role.VIEWER)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListSettings(
            settings_pb2.ListSettingsRequest(page_size=4, page_token=token), metadata=viewer
        )
        seen += [s.name for s in page.settings]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(f"settings/{k}" for k in CATALOGUE)
    assert pages == -(-len(CATALOGUE) // 4)
    # A token is bound to the tenant: another account cannot use it.
    first = await stub.ListSettings(settings_pb2.ListSettingsRequest(page_size=1), metadata=viewer)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSettings(
            settings_pb2.ListSettingsRequest(page_size=1, page_token=first.next_page_token),
            metadata=keys.metadata(account_id=uuid.uuid4(), role=Role.VIEWER),
        )
    assert failure(caught.value).violations.keys() == {"page_token"}


async def test_etag_conflict_is_aborted_and_changes_nothing(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    first = await stub.UpdateSetting(
        _update("settings/notes.format", struct_pb2.Value(string_value="plain")), metadata=admin
    )
    second = await stub.UpdateSetting(
        _update("settings/notes.format", struct_pb2.Value(string_value="html"), first.etag),
        metadata=admin,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            _update("settings/notes.format", struct_pb2.Value(string_value="markdown"), first.etag),
            metadata=admin,
        )
    error = failure(caught.value)
    assert error.code is grpc.StatusCode.ABORTED
    assert error.reason == "ETAG_MISMATCH"
    assert error.domain == "settings.flowpilot.internal"
    current = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.format"), metadata=admin
    )
    assert current.value.string_value == "html"
    assert current.etag == second.etag


async def test_etag_for_a_never_set_key_guards_the_first_write(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    # Create the row through another key, then write this key with etag "0" twice.
    await stub.UpdateSetting(
        _update("settings/notes.format", struct_pb2.Value(string_value="plain")), metadata=admin
    )
    ok = await stub.UpdateSetting(
        _update("settings/ai.model_tier", struct_pb2.Value(string_value="fast"), "0"),
        metadata=admin,
    )
    assert ok.value.string_value == "fast"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            _update("settings/ai.model_tier", struct_pb2.Value(string_value="deep"), "0"),
            metadata=admin,
        )
    assert caught.value.code() is grpc.StatusCode.ABORTED
    # A made-up etag on an account without a row is stale too, and creates nothing.
    fresh = keys.metadata(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            _update("settings/ai.model_tier", struct_pb2.Value(string_value="deep"), "7"),
            metadata=fresh,
        )
    assert caught.value.code() is grpc.StatusCode.ABORTED


async def test_concurrent_updates_of_two_keys_both_survive(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    for round_ in range(5):
        hours = 10 + round_
        tier = ("fast", "deep")[round_ % 2]
        await asyncio.gather(
            stub.UpdateSetting(
                _update("settings/walks.stale_after_hours", struct_pb2.Value(number_value=hours)),
                metadata=admin,
            ),
            stub.UpdateSetting(
                _update("settings/ai.model_tier", struct_pb2.Value(string_value=tier)),
                metadata=admin,
            ),
            stub.UpdateSetting(
                _update("settings/notes.format", struct_pb2.Value(string_value="plain")),
                metadata=admin,
            ),
        )
        listed = await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin)
        values = {s.name: s.value for s in listed.settings}
        assert values["settings/walks.stale_after_hours"].number_value == hours
        assert values["settings/ai.model_tier"].string_value == tier
        assert values["settings/notes.format"].string_value == "plain"


BAD_UPDATES = [
    ("settings/no.such_key", struct_pb2.Value(bool_value=True), grpc.StatusCode.NOT_FOUND, None),
    (
        "notes.format",
        struct_pb2.Value(string_value="plain"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.name",
    ),
    (
        "settings/notes.format",
        struct_pb2.Value(string_value="pdf"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/notes.format",
        struct_pb2.Value(bool_value=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/notes.redact_sensitive",
        struct_pb2.Value(string_value="yes"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/walks.stale_after_hours",
        struct_pb2.Value(number_value=0),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/walks.stale_after_hours",
        struct_pb2.Value(number_value=169),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/walks.stale_after_hours",
        struct_pb2.Value(number_value=4.5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/walks.stale_after_hours",
        struct_pb2.Value(string_value="4"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/walks.stale_after_hours",
        struct_pb2.Value(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.value",
    ),
    (
        "settings/" + "x" * 200,
        struct_pb2.Value(bool_value=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "setting.name",
    ),
]


@pytest.mark.parametrize(("name", "value", "code", "field"), BAD_UPDATES)
async def test_bad_updates_are_rejected_and_change_nothing(
    stub,
    keys: Keys,
    account: uuid.UUID,
    name: str,
    value: struct_pb2.Value,
    code: grpc.StatusCode,
    field: str | None,
) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    before = await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(_update(name, value), metadata=admin)
    error = failure(caught.value)
    assert error.code is code
    if field:
        assert field in error.violations, error
    after = await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin)
    assert after == before


async def test_bad_masks_and_etags_and_page_sizes(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    request = _update("settings/notes.format", struct_pb2.Value(string_value="plain"))
    request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=["description"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(request, metadata=admin)
    assert "update_mask" in failure(caught.value).violations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(
            _update("settings/notes.format", struct_pb2.Value(string_value="plain"), "W/abc"),
            metadata=admin,
        )
    assert "setting.etag" in failure(caught.value).violations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSettings(settings_pb2.ListSettingsRequest(page_size=-1), metadata=admin)
    assert "page_size" in failure(caught.value).violations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSettings(settings_pb2.ListSettingsRequest(page_token="garbage!"), metadata=admin)
    assert "page_token" in failure(caught.value).violations
    # The setting message is required.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(settings_pb2.UpdateSettingRequest(), metadata=admin)
    assert "setting" in failure(caught.value).violations
    huge = await stub.ListSettings(settings_pb2.ListSettingsRequest(page_size=5000), metadata=admin)
    assert len(huge.settings) == len(CATALOGUE)


async def test_roles(stub, keys: Keys, service_keys: dict[str, Keys], account: uuid.UUID) -> None:
    request = _update("settings/notes.format", struct_pb2.Value(string_value="plain"))
    for role in (Role.VIEWER, Role.ENGINEER):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateSetting(request, metadata=keys.metadata(account_id=account, role=role))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # A genuine service token may read (sweeps need settings) but never write.
    service = ServiceCredential(
        service="walks", private_key=service_keys["walks"].private_pem, audience=AUDIENCE
    )
    service_md = (("authorization", f"Bearer {service.token_for(account)}"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSetting(request, metadata=service_md)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    read = await stub.GetSetting(
        settings_pb2.GetSettingRequest(name="settings/notes.format"), metadata=service_md
    )
    assert read.value.string_value == "markdown"
    for role in (Role.TEAM_ADMIN, Role.SUPER_ADMIN):
        await stub.UpdateSetting(request, metadata=keys.metadata(account_id=account, role=role))


UNKNOWN = "settings/no.such.key"


async def test_a_key_not_in_the_catalogue_is_not_found_in_every_rpc(
    stub, keys: Keys, account: uuid.UUID, database: RunDatabase
) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    before = await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin)
    calls = {
        "GetSetting": stub.GetSetting(settings_pb2.GetSettingRequest(name=UNKNOWN), metadata=admin),
        # Whatever the value: there is no entry to check it against.
        "UpdateSetting": stub.UpdateSetting(
            _update(UNKNOWN, struct_pb2.Value(bool_value=True)), metadata=admin
        ),
        "UpdateSetting (odd value)": stub.UpdateSetting(
            _update(UNKNOWN, struct_pb2.Value(string_value="pdf")), metadata=admin
        ),
        "UpdateSetting (etag)": stub.UpdateSetting(
            _update(UNKNOWN, struct_pb2.Value(number_value=1), "7"), metadata=admin
        ),
        "ResetSetting": stub.ResetSetting(settings_pb2.ResetSettingRequest(name=UNKNOWN), metadata=admin),
        "ResetSetting (etag)": stub.ResetSetting(
            settings_pb2.ResetSettingRequest(name=UNKNOWN, etag="7"), metadata=admin
        ),
    }
    for label, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = failure(caught.value)
        assert (error.code, error.reason, error.message) == (
            grpc.StatusCode.NOT_FOUND,
            "NOT_FOUND",
            f"setting {UNKNOWN!r} not found",
        ), label
    # A malformed name is another matter: INVALID_ARGUMENT.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSetting(settings_pb2.GetSettingRequest(name="no.such.key"), metadata=admin)
    assert failure(caught.value).violations.keys() == {"name"}
    # Nothing was written: no row for the account, the same listing.
    assert await stub.ListSettings(settings_pb2.ListSettingsRequest(), metadata=admin) == before
    engine = create_async_engine(database.runtime_url("settings"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(account)}
            )
            rows = (await conn.execute(text("SELECT count(*) FROM settings.account_settings"))).scalar_one()
    finally:
        await engine.dispose()
    assert rows == 0


def _rpc_comments() -> dict[str, str]:
    """Each SettingsService RPC's comment, from the proto source."""
    source = (ROOT / "protos/flowpilot/settings/v1/settings.proto").read_text()
    found = re.findall(r"((?:  //[^\n]*\n)+)  rpc (\w+)\(", source)
    return {
        rpc: " ".join(line.strip().removeprefix("//").strip() for line in block.splitlines())
        for block, rpc in found
    }


def test_the_proto_documents_not_found_for_an_unknown_key() -> None:
    comments = _rpc_comments()
    for rpc in ("GetSetting", "UpdateSetting", "ResetSetting"):
        errors = comments[rpc].partition("Errors:")[2]
        assert "NOT_FOUND for a key that is not in the catalogue" in errors, (rpc, errors)
        assert "unknown key" not in errors, (rpc, errors)
