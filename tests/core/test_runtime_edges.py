"""The runtime at the edges, through real services on real PostgreSQL: text
no column can store, bytes that are no message, and service tokens bound to
the services a method names."""

from __future__ import annotations

import uuid

import grpc
import pytest
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from flowpilot.walks.v1 import walks_pb2, walks_pb2_grpc
from google.protobuf import struct_pb2

from services.core.auth import Role
from tests.support import Keys, RunDatabase, admin_scalar, expect_error, failure

NUL = "\x00"
SESSIONS = "/flowpilot.sessions.v1.SessionsService/"
SETTINGS = "/flowpilot.settings.v1.SettingsService/"


async def _count(database: RunDatabase, table: str, account: uuid.UUID) -> int:
    return int(await admin_scalar(database, f"SELECT count(*) FROM {table} WHERE account_id = :a", a=account))


async def test_nul_in_any_string_of_any_service_is_invalid_argument_and_changes_nothing(
    sessions_channel: grpc.aio.Channel,
    settings_channel: grpc.aio.Channel,
    library_channel: grpc.aio.Channel,
    walks_address: str,
    keys: Keys,
    account: uuid.UUID,
    database: RunDatabase,
) -> None:
    md = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    session = sessions_pb2.Session(ticket_ref="CW #1", title=f"Outlook{NUL}", problem=f"x{NUL}y")
    error = await expect_error(
        sessions.CreateSession(sessions_pb2.CreateSessionRequest(session=session), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="session.title",
    )
    assert "session.problem" in error.violations and "U+0000" in error.violations["session.title"]
    await expect_error(
        sessions.ListSessions(sessions_pb2.ListSessionsRequest(ticket_ref=NUL), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="ticket_ref",
    )

    settings = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    value = struct_pb2.Value(string_value=f"html{NUL}")
    await expect_error(
        settings.UpdateSetting(
            settings_pb2.UpdateSettingRequest(
                setting=settings_pb2.Setting(name="settings/notes.format", value=value)
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="setting.value.string_value",
    )

    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    template = library_pb2.ScriptTemplate(
        display_name="Restart spooler",
        language=library_pb2.LANGUAGE_POWERSHELL,
        body="Restart-Service Spooler",
        tags=["printing", f"spool{NUL}er"],
    )
    await expect_error(
        library.CreateScriptTemplate(
            library_pb2.CreateScriptTemplateRequest(script_template=template), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.tags[1]",
    )
    await expect_error(
        library.ListScriptTemplates(library_pb2.ListScriptTemplatesRequest(query=f"spool{NUL}"), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query",
    )

    async with grpc.aio.insecure_channel(walks_address) as channel:
        walks = walks_pb2_grpc.WalksServiceStub(channel)
        tree = walks_pb2.Tree(
            root="a",
            nodes=[
                walks_pb2.Node(id="a", kind=walks_pb2.NODE_KIND_QUESTION, text="Is it plugged in?",
                               options=[walks_pb2.Option(label=f"Y{NUL}es", next="b")]),
                walks_pb2.Node(id="b", kind=walks_pb2.NODE_KIND_RESOLUTION, text="Done"),
            ],
        )  # fmt: skip
        await expect_error(
            walks.CreateFlow(
                walks_pb2.CreateFlowRequest(flow=walks_pb2.Flow(display_name="Printer", tree=tree)),
                metadata=md,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="flow.tree.nodes[0].options[0].label",
        )

    for table in (
        "sessions.ai_sessions",
        "settings.account_settings",
        "library.script_templates",
        "walks.flows",
    ):
        assert await _count(database, table, account) == 0, table


def _length_delimited(field: int, payload: bytes) -> bytes:
    """One length-delimited field on the wire (tag, varint length, bytes)."""
    out = bytearray([field << 3 | 2])
    size = len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out + payload)


def _nested_value(depth: int) -> bytes:
    """A google.protobuf.Value holding a list holding a value … ``depth`` deep."""
    inner = _length_delimited(3, b"deep")  # Value.string_value
    for _ in range(depth):
        inner = _length_delimited(6, _length_delimited(1, inner))  # Value.list_value.values[0]
    return inner


async def test_bytes_that_are_no_request_message_are_invalid_argument(
    sessions_channel: grpc.aio.Channel, settings_channel: grpc.aio.Channel, keys: Keys, account: uuid.UUID
) -> None:
    md = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    create = sessions_pb2.CreateSessionRequest(
        session=sessions_pb2.Session(ticket_ref="CW #2", title="VPN drops")
    ).SerializeToString()
    setting = _length_delimited(
        1, _length_delimited(1, b"settings/notes.format") + _length_delimited(2, _nested_value(200))
    )
    cases = {
        (SESSIONS, "CreateSession", "truncated"): create[:-3],
        (SESSIONS, "GetSession", "invalid UTF-8 in a string"): _length_delimited(1, b"sessions/\xff\xfe"),
        (SESSIONS, "GetSession", "a field that lies about its length"): b"\x0a\x7fabc",
        (SETTINGS, "UpdateSetting", "nested past the parser's limit"): setting,
    }
    for (service, method, label), payload in cases.items():
        channel = sessions_channel if service == SESSIONS else settings_channel
        call = channel.unary_unary(
            service + method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(payload, metadata=md, timeout=10)
        error = failure(caught.value)
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT, (label, error)
        assert error.reason == "MALFORMED_REQUEST", label
        for internal in ("DecodeError", "protobuf", "Unexpected", "class"):
            assert internal not in error.message, (label, error.message)
        # Without a valid token nothing is decoded at all.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(payload, timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, label


async def test_service_tokens_reach_only_the_methods_that_name_their_service(
    settings_channel: grpc.aio.Channel,
    sessions_channel: grpc.aio.Channel,
    library_channel: grpc.aio.Channel,
    service_keys: dict[str, Keys],
    account: uuid.UUID,
) -> None:
    def as_service(name: str) -> tuple[tuple[str, str], ...]:
        token = service_keys[name].token(
            account_id=account, role=Role.SERVICE, issuer=f"flowpilot-service:{name}"
        )
        return (("authorization", f"Bearer {token}"),)

    settings = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    read = settings_pb2.GetSettingRequest(name="settings/notes.format")
    for caller in ("sessions", "walks"):  # named by GetSetting's service_callers
        assert (await settings.GetSetting(read, metadata=as_service(caller))).name == read.name
    for caller in ("library", "settings"):
        await expect_error(
            settings.GetSetting(read, metadata=as_service(caller)), grpc.StatusCode.PERMISSION_DENIED
        )
    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    imported = library_pb2.ImportSessionScriptsRequest(
        session=f"sessions/{uuid.uuid4()}", resolved_by=str(uuid.uuid4())
    )
    await expect_error(
        library.ImportSessionScripts(imported, metadata=as_service("walks")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # A service token is never a user: user methods refuse it whoever signed it.
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    await expect_error(
        sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=as_service("walks")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
