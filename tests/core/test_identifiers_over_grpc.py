"""Etags, resource names and page tokens in every service, over real
channels: malformed is INVALID_ARGUMENT (never INTERNAL), stale is ABORTED,
an alias of an id is not that id, and a page token is only what the service
itself handed out."""

from __future__ import annotations

import base64
import json
import uuid

import grpc
from flowpilot.api.v1 import tickets_pb2
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from flowpilot.walks.v1 import walks_pb2, walks_pb2_grpc
from google.protobuf import field_mask_pb2, struct_pb2

from services.core.auth import Role
from tests.sessions.helpers import Caller
from tests.support import Keys, expect_error
from tests.walks.helpers import printer_tree

MALFORMED_ETAGS = ["²", "\uff11", "-1", "1.5", "9" * 20, "abc"]


async def test_etags_are_parsed_once_malformed_invalid_stale_aborted(
    sessions_channel: grpc.aio.Channel,
    settings_channel: grpc.aio.Channel,
    library_channel: grpc.aio.Channel,
    walks_address: str,
    keys: Keys,
    account: uuid.UUID,
) -> None:
    md = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    settings = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    session = await Caller(sessions_channel, keys, account=account, role=Role.TEAM_ADMIN).session(
        title="Slow VPN"
    )
    template = await library.CreateScriptTemplate(
        library_pb2.CreateScriptTemplateRequest(
            script_template=library_pb2.ScriptTemplate(
                display_name="Flush DNS",
                language=library_pb2.LANGUAGE_POWERSHELL,
                body="Clear-DnsClientCache",
            )
        ),
        metadata=md,
    )
    title = field_mask_pb2.FieldMask(paths=["title"])
    async with grpc.aio.insecure_channel(walks_address) as channel:
        walks = walks_pb2_grpc.WalksServiceStub(channel)
        flow = await walks.CreateFlow(
            walks_pb2.CreateFlowRequest(flow=walks_pb2.Flow(display_name="Printer", tree=printer_tree())),
            metadata=md,
        )

        def updates(etag: str) -> list[tuple[object, str]]:
            value = struct_pb2.Value(string_value="html")
            return [
                (
                    sessions.UpdateSession(
                        sessions_pb2.UpdateSessionRequest(
                            session=sessions_pb2.Session(name=session.name, title="New", etag=etag),
                            update_mask=title,
                        ),
                        metadata=md,
                    ),
                    "session.etag",
                ),
                (
                    settings.UpdateSetting(
                        settings_pb2.UpdateSettingRequest(
                            setting=settings_pb2.Setting(name="settings/notes.format", value=value, etag=etag)
                        ),
                        metadata=md,
                    ),
                    "setting.etag",
                ),
                (
                    settings.ResetSetting(
                        settings_pb2.ResetSettingRequest(name="settings/notes.format", etag=etag), metadata=md
                    ),
                    "etag",
                ),
                (
                    library.UpdateScriptTemplate(
                        library_pb2.UpdateScriptTemplateRequest(
                            script_template=library_pb2.ScriptTemplate(
                                name=template.name, description="d", etag=etag
                            ),
                            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                        ),
                        metadata=md,
                    ),
                    "script_template.etag",
                ),
                (
                    walks.UpdateFlow(
                        walks_pb2.UpdateFlowRequest(
                            flow=walks_pb2.Flow(name=flow.name, description="d", etag=etag),
                            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                        ),
                        metadata=md,
                    ),
                    "flow.etag",
                ),
            ]

        for etag in MALFORMED_ETAGS:
            for call, field in updates(etag):
                await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, field=field)
        for call, _ in updates("12345"):  # well formed, stale
            await expect_error(call, grpc.StatusCode.ABORTED)
        # Nothing changed.
        assert (
            await sessions.GetSession(sessions_pb2.GetSessionRequest(name=session.name), metadata=md)
        ).title == ("Slow VPN")
        assert (await walks.GetFlow(walks_pb2.GetFlowRequest(name=flow.name), metadata=md)).description == ""


def _aliases(name: str) -> list[str]:
    collection, _, id_ = name.partition("/")
    parsed = uuid.UUID(id_)
    fullwidth = id_.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    return [
        f"{collection}/{{{id_}}}",
        f"{collection}/urn:uuid:{id_}",
        f"{collection}/{parsed.hex}",
        f"{collection}/{id_.upper()}",
        f"{collection}/{fullwidth}",
    ]


async def test_an_alias_of_an_id_is_not_that_id(
    sessions_channel: grpc.aio.Channel, library_channel: grpc.aio.Channel, keys: Keys, account: uuid.UUID
) -> None:
    md = keys.metadata(account_id=account, role=Role.TEAM_ADMIN)
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    session = await Caller(sessions_channel, keys, account=account, role=Role.TEAM_ADMIN).session(
        title="Printer"
    )
    for alias in _aliases(session.name):
        await expect_error(
            sessions.GetSession(sessions_pb2.GetSessionRequest(name=alias), metadata=md),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="name",
        )
        await expect_error(
            sessions.ListFacts(sessions_pb2.ListFactsRequest(parent=alias), metadata=md),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="parent",
        )
    await expect_error(
        sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                session=sessions_pb2.Session(
                    ticket_ref="CW #11", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="x"
                ),
                request_id=uuid.uuid4().hex,
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="request_id",
    )
    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    for alias in _aliases(f"scriptTemplates/{uuid.uuid4()}"):
        await expect_error(
            library.GetScriptTemplate(library_pb2.GetScriptTemplateRequest(name=alias), metadata=md),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="name",
        )


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_page_tokens_are_only_those_the_service_made(
    sessions_channel: grpc.aio.Channel,
    library_channel: grpc.aio.Channel,
    walks_address: str,
    keys: Keys,
    account: uuid.UUID,
) -> None:
    md = keys.metadata(account_id=account, role=Role.ENGINEER)
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    for n in range(3):
        await sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                session=sessions_pb2.Session(
                    ticket_ref=f"CW #{n}", ticket_kind=tickets_pb2.TICKET_KIND_PSA, title="t"
                )
            ),
            metadata=md,
        )
    page = await sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1), metadata=md)
    assert page.next_page_token
    following = await sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(page_size=1, page_token=page.next_page_token), metadata=md
    )
    assert following.sessions[0].name != page.sessions[0].name

    payload, mac = page.next_page_token.split(".")
    forged = [
        _b64({"p": ["not-a-time", str(uuid.uuid4())], "f": "x"}),
        _b64({"p": ["9999-12-31T23:59:59-14:00", str(uuid.uuid4())], "f": "x"}),
        f"{_b64(['9999-12-31T23:59:59-14:00', str(uuid.uuid4())])}.{mac}",
        f"{payload}.{mac[:-1]}B",
        "abc",
        "{}",
        "1e30",
        "\u00e9",
    ]
    other = keys.metadata(account_id=uuid.uuid4(), role=Role.ENGINEER)
    async with grpc.aio.insecure_channel(walks_address) as channel:
        walks = walks_pb2_grpc.WalksServiceStub(channel)
        for token in forged:
            for call in (
                sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_token=token), metadata=md),
                library.ListScriptTemplates(
                    library_pb2.ListScriptTemplatesRequest(page_token=token), metadata=md
                ),
                walks.ListWalks(walks_pb2.ListWalksRequest(page_token=token), metadata=md),
            ):
                await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, reason="INVALID_PAGE_TOKEN")
    # A real token under another filter, or from another account, is refused too.
    for call in (
        sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(page_token=page.next_page_token, ticket_ref="CW #1"), metadata=md
        ),
        sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(page_token=page.next_page_token), metadata=other
        ),
    ):
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, reason="INVALID_PAGE_TOKEN")
