"""Prompts: the global defaults, an account's overrides and resets, etags,
roles and tenant isolation, through a real channel and in the database."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role
from tests.support import Keys, RunDatabase, failure

DEFAULTS = importlib.import_module("migrations.versions.settings.0004_prompts").DEFAULTS


@pytest.fixture
def stub(settings_channel: grpc.aio.Channel) -> settings_pb2_grpc.SettingsServiceStub:
    return settings_pb2_grpc.SettingsServiceStub(settings_channel)


def _update(name: str, body: str, etag: str = "") -> settings_pb2.UpdatePromptRequest:
    return settings_pb2.UpdatePromptRequest(prompt=settings_pb2.Prompt(name=name, text=body, etag=etag))


async def test_every_account_reads_the_global_defaults(stub, keys: Keys, account: uuid.UUID) -> None:
    listed = await stub.ListPrompts(
        settings_pb2.ListPromptsRequest(), metadata=keys.metadata(account_id=account, role=Role.VIEWER)
    )
    assert [p.name for p in listed.prompts] == sorted(f"prompts/{slug}" for slug, _, _ in DEFAULTS)
    assert all(p.default and p.version == 1 and p.etag == "1" for p in listed.prompts)
    assert not any(p.HasField("update_time") for p in listed.prompts)
    chat = next(p for p in listed.prompts if p.name == "prompts/task.chat")
    assert chat.purpose == settings_pb2.PROMPT_PURPOSE_TASK
    assert chat.text.startswith("You are FlowPilot's copilot")
    assert listed.next_page_token == ""


async def test_list_pages_by_name(stub, keys: Keys, account: uuid.UUID) -> None:
    viewer = keys.metadata(account_id=account, role=Role.VIEWER)
    first = await stub.ListPrompts(settings_pb2.ListPromptsRequest(page_size=4), metadata=viewer)
    assert len(first.prompts) == 4 and first.next_page_token
    rest = await stub.ListPrompts(
        settings_pb2.ListPromptsRequest(page_size=1000, page_token=first.next_page_token), metadata=viewer
    )
    names = [p.name for p in first.prompts] + [p.name for p in rest.prompts]
    assert names == sorted(f"prompts/{slug}" for slug, _, _ in DEFAULTS)
    assert rest.next_page_token == ""


async def test_override_then_reset(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    default = await stub.GetPrompt(settings_pb2.GetPromptRequest(name="prompts/task.note"), metadata=admin)
    request = _update("prompts/task.note", "Write the note in {format}, in haiku.", etag=default.etag)
    request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=["text"]))
    override = await stub.UpdatePrompt(request, metadata=admin)
    assert override.text == "Write the note in {format}, in haiku."
    assert override.version == 2 and override.etag == "2"
    assert override.default is False and override.HasField("update_time")
    read = await stub.GetPrompt(
        settings_pb2.GetPromptRequest(name="prompts/task.note"),
        metadata=keys.metadata(account_id=account, role=Role.VIEWER),
    )
    assert read == override
    again = await stub.UpdatePrompt(_update("prompts/task.note", "Shorter."), metadata=admin)
    assert again.version == 3
    reset = await stub.ResetPrompt(
        settings_pb2.ResetPromptRequest(name="prompts/task.note", etag=again.etag), metadata=admin
    )
    assert reset.text == default.text and reset.version == 1 and reset.default is True
    # Resetting the default changes nothing; the next override never reuses a version.
    assert (
        await stub.ResetPrompt(settings_pb2.ResetPromptRequest(name="prompts/task.note"), metadata=admin)
        == reset
    )
    later = await stub.UpdatePrompt(_update("prompts/task.note", "Later."), metadata=admin)
    assert later.version == 4


async def test_a_stale_etag_is_aborted(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    first = await stub.UpdatePrompt(_update("prompts/task.fix", "One."), metadata=admin)
    await stub.UpdatePrompt(_update("prompts/task.fix", "Two.", etag=first.etag), metadata=admin)
    for call in (
        stub.UpdatePrompt(_update("prompts/task.fix", "Three.", etag=first.etag), metadata=admin),
        stub.ResetPrompt(
            settings_pb2.ResetPromptRequest(name="prompts/task.fix", etag=first.etag), metadata=admin
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.ABORTED
        assert failure(caught.value).reason == "ETAG_MISMATCH"
    current = await stub.GetPrompt(settings_pb2.GetPromptRequest(name="prompts/task.fix"), metadata=admin)
    assert current.text == "Two."


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ENGINEER])
async def test_only_a_team_admin_changes_prompts(stub, keys: Keys, account: uuid.UUID, role: Role) -> None:
    metadata = keys.metadata(account_id=account, role=role)
    for call in (
        stub.UpdatePrompt(_update("prompts/system", "Be rude."), metadata=metadata),
        stub.ResetPrompt(settings_pb2.ResetPromptRequest(name="prompts/system"), metadata=metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (_update("prompts/task.nope", "x"), grpc.StatusCode.NOT_FOUND, ""),
        (_update("prompts/Task.Fix", "x"), grpc.StatusCode.INVALID_ARGUMENT, "prompt.name"),
        (_update("prompts/task..fix", "x"), grpc.StatusCode.INVALID_ARGUMENT, "prompt.name"),
        (_update("settings/task.fix", "x"), grpc.StatusCode.INVALID_ARGUMENT, "prompt.name"),
        (_update("prompts/task.fix", "   "), grpc.StatusCode.INVALID_ARGUMENT, "prompt.text"),
        (_update("prompts/task.fix", ""), grpc.StatusCode.INVALID_ARGUMENT, "prompt.text"),
        (_update("prompts/task.fix", "x" * 20_001), grpc.StatusCode.INVALID_ARGUMENT, "prompt.text"),
        (_update("prompts/task.fix", "x", etag="v1"), grpc.StatusCode.INVALID_ARGUMENT, "prompt.etag"),
    ],
)
async def test_invalid_updates(
    stub, keys: Keys, account: uuid.UUID, request_: settings_pb2.UpdatePromptRequest, code, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdatePrompt(request_, metadata=keys.metadata(account_id=account, role=Role.TEAM_ADMIN))
    assert caught.value.code() is code
    if field:
        assert field in failure(caught.value).violations


async def test_the_longest_text_is_accepted(stub, keys: Keys, account: uuid.UUID) -> None:
    done = await stub.UpdatePrompt(
        _update("prompts/task.tree", "é" * 20_000),
        metadata=keys.metadata(account_id=account, role=Role.TEAM_ADMIN),
    )
    assert len(done.text) == 20_000


async def test_another_accounts_override_is_never_visible(stub, keys: Keys) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    a_admin = keys.metadata(account_id=a, role=Role.TEAM_ADMIN)
    b_admin = keys.metadata(account_id=b, role=Role.TEAM_ADMIN)
    a_set = await stub.UpdatePrompt(_update("prompts/task.chat", "A's copilot."), metadata=a_admin)
    b_view = await stub.GetPrompt(settings_pb2.GetPromptRequest(name="prompts/task.chat"), metadata=b_admin)
    assert b_view.default is True and b_view.text != "A's copilot."
    b_list = await stub.ListPrompts(settings_pb2.ListPromptsRequest(), metadata=b_admin)
    assert all(p.default for p in b_list.prompts)
    # B's reset does not touch A's override; B's own override is B's alone.
    await stub.ResetPrompt(settings_pb2.ResetPromptRequest(name="prompts/task.chat"), metadata=b_admin)
    b_set = await stub.UpdatePrompt(_update("prompts/task.chat", "B's copilot."), metadata=b_admin)
    assert b_set.version == 2
    a_view = await stub.GetPrompt(settings_pb2.GetPromptRequest(name="prompts/task.chat"), metadata=a_admin)
    assert a_view == a_set


async def test_rls_reads_the_defaults_and_writes_only_the_accounts_own(database: RunDatabase) -> None:
    account = uuid.uuid4()
    engine = create_async_engine(database.runtime_url("settings"))
    tenant = text("SELECT set_config('app.current_account_id', :a, true)")
    try:
        async with engine.connect() as conn:
            # No tenant, no row: not even the defaults.
            assert (await conn.execute(text("SELECT count(*) FROM settings.prompts"))).scalar_one() == 0
            await conn.rollback()
        async with engine.connect() as conn:
            await conn.execute(tenant, {"a": str(account)})
            defaults = (
                await conn.execute(text("SELECT count(*) FROM settings.prompts WHERE account_id IS NULL"))
            ).scalar_one()
            assert defaults == len(DEFAULTS)
            await conn.rollback()
        refused = {
            # A global row can be neither written, nor changed, nor taken over.
            "INSERT INTO settings.prompts (account_id, slug, purpose, text, version, active) "
            "VALUES (NULL, 'system', 'system', 'x', 99, false)": "row-level security",
            "INSERT INTO settings.prompts (account_id, slug, purpose, text, version, active) "
            "VALUES (gen_random_uuid(), 'system', 'system', 'x', 99, false)": "row-level security",
            "UPDATE settings.prompts SET account_id = gen_random_uuid()": "permission denied",
            "UPDATE settings.prompts SET text = 'x'": "permission denied",
            "DELETE FROM settings.prompts": "permission denied",
        }
        for statement, message in refused.items():
            async with engine.connect() as conn:
                await conn.execute(tenant, {"a": str(account)})
                with pytest.raises(DBAPIError, match=message):
                    await conn.execute(text(statement))
                await conn.rollback()
        async with engine.connect() as conn:
            await conn.execute(tenant, {"a": str(account)})
            # Under the write policy an UPDATE finds no global row to change.
            changed = await conn.execute(
                text("UPDATE settings.prompts SET active = false WHERE account_id IS NULL")
            )
            assert changed.rowcount == 0
            await conn.commit()
        async with engine.connect() as conn:
            await conn.execute(tenant, {"a": str(account)})
            active = (
                await conn.execute(
                    text("SELECT count(*) FROM settings.prompts WHERE account_id IS NULL AND active")
                )
            ).scalar_one()
            assert active == len(DEFAULTS)
            await conn.rollback()
    finally:
        await engine.dispose()


async def test_concurrent_overrides_with_one_etag_one_wins(stub, keys: Keys, account: uuid.UUID) -> None:
    admin = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    results = await asyncio.gather(
        *(
            stub.UpdatePrompt(_update("prompts/task.package", f"Take {i}.", etag="1"), metadata=admin)
            for i in range(4)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, settings_pb2.Prompt)]
    assert len(won) == 1 and won[0].version == 2
    assert all(r.code() is grpc.StatusCode.ABORTED for r in results if isinstance(r, grpc.aio.AioRpcError))


def test_the_defaults_are_the_prompts_the_backend_sent_verbatim() -> None:
    from services.core.ai import anthropic_backend

    shipped = {slug: body for slug, _, body in DEFAULTS}
    assert shipped["system"] == anthropic_backend.SYSTEM
    assert shipped["task.chat"] == anthropic_backend.CHAT_SYSTEM
    for tool in anthropic_backend.CHAT_TOOLS:
        assert shipped[f"tool.{tool['name']}"] == tool["description"]
