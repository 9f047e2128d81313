"""Library tenancy, the internal import RPC and service tokens, grpcurl."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from flowpilot.library.v1 import library_pb2 as pb
from flowpilot.library.v1 import library_pb2_grpc

from services.core.auth import Role, ServiceCredential
from tests.grpcurl import grpcurl
from tests.library.helpers import Librarian
from tests.support import AUDIENCE, Keys, failure


@pytest.fixture
def pair(library_channel: grpc.aio.Channel, keys: Keys) -> tuple[Librarian, Librarian]:
    return Librarian(library_channel, keys), Librarian(library_channel, keys)


async def _error(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = failure(caught.value)
    return error.code, error.message


async def test_other_account_cannot_see_or_review(pair: tuple[Librarian, Librarian]) -> None:
    a, b = pair
    template = await a.template("Shared name", body="echo", parameters=[])
    draft = await a.draft("echo secret", suggested_name="A's draft")
    # Natural keys are per account: B may use A's template name.
    mine = await b.template("Shared name", body="echo", parameters=[])
    assert mine.name != template.name
    fake_draft = f"draftTemplates/{uuid.uuid4()}"
    for method, real, fake in (
        (
            "ApproveDraftTemplate",
            pb.ApproveDraftTemplateRequest(name=draft.name),
            pb.ApproveDraftTemplateRequest(name=fake_draft),
        ),
        (
            "RejectDraftTemplate",
            pb.RejectDraftTemplateRequest(name=draft.name),
            pb.RejectDraftTemplateRequest(name=fake_draft),
        ),
        (
            "GetDraftTemplate",
            pb.GetDraftTemplateRequest(name=draft.name),
            pb.GetDraftTemplateRequest(name=fake_draft),
        ),
        (
            "TemplatizeDraftTemplate",
            pb.TemplatizeDraftTemplateRequest(name=draft.name),
            pb.TemplatizeDraftTemplateRequest(name=fake_draft),
        ),
    ):
        code, message = await _error(b.call(method, real))
        fake_code, fake_message = await _error(b.call(method, fake))
        assert code is fake_code is grpc.StatusCode.NOT_FOUND, method
        assert message.replace(draft.name, "<n>") == fake_message.replace(fake_draft, "<n>")
    for method, request in (
        ("GetScriptTemplate", pb.GetScriptTemplateRequest(name=template.name)),
        ("RecordTemplateUse", pb.RecordTemplateUseRequest(name=template.name)),
        ("DeleteScriptTemplate", pb.DeleteScriptTemplateRequest(name=template.name)),
        ("RenderScriptTemplate", pb.RenderScriptTemplateRequest(name=template.name)),
    ):
        code, _ = await _error(b.call(method, request))
        assert code is grpc.StatusCode.NOT_FOUND, method
    assert (await b.call("CountPendingDrafts", pb.CountPendingDraftsRequest())).count == 0
    listed = await b.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query="shared"))
    assert [t.name for t in listed.script_templates] == [mine.name]
    still = await a.call("GetDraftTemplate", pb.GetDraftTemplateRequest(name=draft.name))
    assert still.status == pb.DRAFT_STATUS_PENDING
    assert (
        await a.call("GetScriptTemplate", pb.GetScriptTemplateRequest(name=template.name))
    ).usage_count == 0


def _import_request(session: uuid.UUID, user: uuid.UUID) -> pb.ImportSessionScriptsRequest:
    return pb.ImportSessionScriptsRequest(
        session=f"sessions/{session}",
        resolved_by=str(user),
        ticket_ref="CW #31337",
        scripts=[
            pb.SessionScript(
                lane_item=f"sessions/{session}/laneItems/a1",
                script_body="Restart-Service spooler",
                language=pb.LANGUAGE_POWERSHELL,
                title="Restart spooler",
            ),
            pb.SessionScript(
                lane_item=f"sessions/{session}/laneItems/b2",
                script_body="ipconfig /flushdns",
                language=pb.LANGUAGE_CMD,
                title="Flush DNS",
            ),
        ],
    )


async def test_import_needs_a_service_token_and_is_idempotent(
    library_channel: grpc.aio.Channel, keys: Keys, service_keys: dict[str, Keys]
) -> None:
    stub = library_pb2_grpc.LibraryServiceStub(library_channel)
    account, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    request = _import_request(session, user)
    for role in (Role.ENGINEER, Role.SUPER_ADMIN):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ImportSessionScripts(request, metadata=keys.metadata(account_id=account, role=role))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # A service token signed with another service's key under this issuer is forged.
    forged = ServiceCredential(
        service="sessions", private_key=service_keys["walks"].private_pem, audience=AUDIENCE
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ImportSessionScripts(
            request, metadata=(("authorization", f"Bearer {forged.token_for(account)}"),)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    sessions = ServiceCredential(
        service="sessions", private_key=service_keys["sessions"].private_pem, audience=AUDIENCE
    )
    md = (("authorization", f"Bearer {sessions.token_for(account)}"),)
    first = await stub.ImportSessionScripts(request, metadata=md)
    again = await stub.ImportSessionScripts(request, metadata=md)
    assert [d.name for d in first.draft_templates] == [d.name for d in again.draft_templates]
    assert len(first.draft_templates) == 2
    draft = first.draft_templates[0]
    assert draft.provenance.ticket_ref == "CW #31337" and draft.provenance.user == str(user)
    assert draft.suggested_name == "Restart spooler"
    # The drafts belong to that account only.
    count = await stub.CountPendingDrafts(
        pb.CountPendingDraftsRequest(), metadata=keys.metadata(account_id=account, role=Role.VIEWER)
    )
    assert count.count == 2


async def test_grpcurl(library_address: str, keys: Keys) -> None:
    listed = await grpcurl("-plaintext", library_address, "list", "flowpilot.library.v1.LibraryService")
    assert listed.code == 0 and "ApproveDraftTemplate" in listed.out
    token = keys.token(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)
    created = await grpcurl(
        "-plaintext", "-H", f"authorization: Bearer {token}",
        "-d", json.dumps({"script_template": {"display_name": "Who am I", "body": "whoami", "language": "LANGUAGE_CMD"}}),
        library_address, "flowpilot.library.v1.LibraryService/CreateScriptTemplate",
    )  # fmt: skip
    assert created.code == 0, created.err
    assert json.loads(created.out)["provenance_summary"] == "used 0 times"
