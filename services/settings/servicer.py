"""gRPC surface of the settings service: decode, call the rules, encode."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias, cast

import grpc
from flowpilot.api.v1 import access_pb2
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2

from services.core import ids, names, pagination, validation
from services.core.auth import current_principal
from services.core.db import Database
from services.core.errors import Aborted
from services.core.messages import set_time
from services.settings import catalogue, prompts, storage
from services.settings.catalogue import CATALOGUE, KEYS, Entry, Kind, Value

PATTERN = "settings/{setting}"

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_VALUE_TYPES = {
    Kind.BOOL: settings_pb2.VALUE_TYPE_BOOL,
    Kind.INTEGER: settings_pb2.VALUE_TYPE_INTEGER,
    Kind.ENUM: settings_pb2.VALUE_TYPE_ENUM,
    Kind.TIME_ZONE: settings_pb2.VALUE_TYPE_TIME_ZONE,
}


def _entry_for(name: str, *, field: str) -> Entry:
    """A malformed name is INVALID_ARGUMENT; a key not in the catalogue NOT_FOUND."""
    return catalogue.find(names.parse(name, PATTERN, field=field)["setting"], name=name)


def _to_value(value: Value) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=value)


def _from_value(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    return None


def _setting(entry: Entry, stored: storage.StoredEntry) -> settings_pb2.Setting:
    message = settings_pb2.Setting(
        name=names.format_name(PATTERN, setting=entry.key),
        value=_to_value(stored.value if stored.has_value else entry.default),
        default=not stored.has_value,
        default_value=_to_value(entry.default),
        value_type=_VALUE_TYPES[entry.kind],
        allowed_values=entry.allowed,
        minimum=entry.minimum,
        maximum=entry.maximum,
        description=entry.description,
        update_role=cast(access_pb2.Role.ValueType, int(entry.update_role)),
        etag=str(stored.revision),
    )
    set_time(message, "update_time", stored.update_time)
    return message


_PURPOSES = {
    "system": settings_pb2.PROMPT_PURPOSE_SYSTEM,
    "task": settings_pb2.PROMPT_PURPOSE_TASK,
    "tool": settings_pb2.PROMPT_PURPOSE_TOOL,
}


def _prompt(stored: storage.StoredPrompt) -> settings_pb2.Prompt:
    message = settings_pb2.Prompt(
        name=names.format_name(prompts.PATTERN, prompt=stored.slug),
        purpose=_PURPOSES[stored.purpose],
        text=stored.text,
        version=stored.version,
        default=stored.account_id is None,
        etag=str(stored.version),
    )
    if stored.account_id is not None:
        set_time(message, "update_time", stored.create_time)
    return message


class SettingsServicer(settings_pb2_grpc.SettingsServiceServicer):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def GetSetting(
        self, request: settings_pb2.GetSettingRequest, context: Context
    ) -> settings_pb2.Setting:
        entry = _entry_for(request.name, field="name")
        stored = await storage.get_entries(self._db, current_principal().account_id)
        return _setting(entry, stored.get(entry.key, storage.NEVER_SET))

    async def ListSettings(
        self, request: settings_pb2.ListSettingsRequest, context: Context
    ) -> settings_pb2.ListSettingsResponse:
        size = pagination.page_size(request.page_size)
        query = pagination.fingerprint(current_principal().account_id, {"list": "settings"})
        after = pagination.decode_token(request.page_token, query_fingerprint=query)
        start = 0
        if after:
            start = next((i for i, key in enumerate(KEYS) if key > str(after[0])), len(KEYS))
        keys = KEYS[start : start + size]
        stored = await storage.get_entries(self._db, current_principal().account_id)
        response = settings_pb2.ListSettingsResponse(
            settings=[_setting(CATALOGUE[k], stored.get(k, storage.NEVER_SET)) for k in keys]
        )
        if start + size < len(KEYS):
            response.next_page_token = pagination.encode_token([keys[-1]], query_fingerprint=query)
        return response

    async def UpdateSetting(
        self, request: settings_pb2.UpdateSettingRequest, context: Context
    ) -> settings_pb2.Setting:
        validation.update_paths(
            request.setting, request.update_mask.paths, allowed={"value"}, default={"value"}, prefix="setting"
        )
        entry = _entry_for(request.setting.name, field="setting.name")
        expected = ids.parse_etag(request.setting.etag, field="setting.etag")
        value = entry.validate(_from_value(request.setting.value), field_path="setting.value")
        return await self._write(
            current_principal().account_id, entry, value=value, reset=False, expected=expected
        )

    async def ResetSetting(
        self, request: settings_pb2.ResetSettingRequest, context: Context
    ) -> settings_pb2.Setting:
        entry = _entry_for(request.name, field="name")
        expected = ids.parse_etag(request.etag, field="etag")
        return await self._write(
            current_principal().account_id, entry, value=None, reset=True, expected=expected
        )

    async def _write(
        self, account: uuid.UUID, entry: Entry, *, value: Value | None, reset: bool, expected: int | None
    ) -> settings_pb2.Setting:
        principal = current_principal()
        principal.require(entry.update_role)
        async with self._db.transaction(account) as conn:
            stored = await storage.write_entry(
                conn,
                account_id=principal.account_id,
                user_id=principal.user_id,
                key=entry.key,
                value=value,
                reset=reset,
                expected_revision=expected,
            )
        if stored is None:
            raise Aborted(
                f"setting {entry.key!r} changed since etag {expected}; read it again",
                reason="ETAG_MISMATCH",
            )
        return _setting(entry, stored)

    async def GetPrompt(
        self, request: settings_pb2.GetPromptRequest, context: Context
    ) -> settings_pb2.Prompt:
        slug = prompts.slug_of(request.name, field="name")
        async with self._db.transaction(current_principal().account_id) as conn:
            return _prompt(await prompts.get(conn, slug))

    async def ListPrompts(
        self, request: settings_pb2.ListPromptsRequest, context: Context
    ) -> settings_pb2.ListPromptsResponse:
        size = pagination.page_size(request.page_size)
        account = current_principal().account_id
        query = pagination.fingerprint(account, {"list": "prompts"})
        after = pagination.decode_token(request.page_token, query_fingerprint=query)
        async with self._db.transaction(account) as conn:
            every = await storage.active_prompts(conn)
        if after:
            every = [p for p in every if p.slug > str(after[0])]
        page = every[:size]
        response = settings_pb2.ListPromptsResponse(prompts=[_prompt(p) for p in page])
        if len(every) > size:
            response.next_page_token = pagination.encode_token([page[-1].slug], query_fingerprint=query)
        return response

    async def UpdatePrompt(
        self, request: settings_pb2.UpdatePromptRequest, context: Context
    ) -> settings_pb2.Prompt:
        validation.update_paths(
            request.prompt, request.update_mask.paths, allowed={"text"}, default={"text"}, prefix="prompt"
        )
        slug = prompts.slug_of(request.prompt.name, field="prompt.name")
        expected = ids.parse_etag(request.prompt.etag, field="prompt.etag")
        body = prompts.checked_text(request.prompt.text, field="prompt.text")
        return await self._write_prompt(slug, body=body, expected=expected)

    async def ResetPrompt(
        self, request: settings_pb2.ResetPromptRequest, context: Context
    ) -> settings_pb2.Prompt:
        slug = prompts.slug_of(request.name, field="name")
        expected = ids.parse_etag(request.etag, field="etag")
        return await self._write_prompt(slug, body=None, expected=expected)

    async def _write_prompt(
        self, slug: str, *, body: str | None, expected: int | None
    ) -> settings_pb2.Prompt:
        principal = current_principal()
        async with self._db.transaction(principal.account_id) as conn:
            stored = await prompts.write(
                conn,
                account_id=principal.account_id,
                user_id=principal.user_id,
                slug=slug,
                body=body,
                expected_version=expected,
            )
        return _prompt(stored)
