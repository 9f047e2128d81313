"""Draft provenance comes from the verified caller, never from what a request claims."""

from __future__ import annotations

import uuid

import grpc
import pytest
from flowpilot.library.v1 import library_pb2 as pb

from services.core.auth import Role, ServiceCredential, mint_token, service_issuer, service_user_id
from tests.library.helpers import Librarian, draft_rows, session_scripts
from tests.support import AUDIENCE, Keys, RunDatabase
from tests.support import expect_error as _fails


@pytest.fixture
def lib(library_channel: grpc.aio.Channel, keys: Keys) -> Librarian:
    return Librarian(library_channel, keys, role=Role.TEAM_ADMIN)


def _credential(service_keys: dict[str, Keys], service: str) -> ServiceCredential:
    return ServiceCredential(
        service=service, private_key=service_keys[service].private_pem, audience=AUDIENCE
    )


async def test_a_draft_made_by_hand_claims_no_provenance(lib: Librarian, database: RunDatabase) -> None:
    # Another tenant's session, someone else as the resolver, a made-up ticket.
    victim_session, someone = uuid.uuid4(), uuid.uuid4()
    claim = pb.Provenance(
        session=f"sessions/{victim_session}",
        lane_item=f"sessions/{victim_session}/laneItems/a1",
        user=str(someone),
        ticket_ref="CW #999",
    )
    draft = await lib.draft("echo hi", suggested_name="By hand", provenance=claim)
    assert draft.provenance == pb.Provenance(user=str(lib.user))
    # A second claim of the same lane item is no repeat of the first: nothing was claimed.
    other = await lib.draft("echo again", suggested_name="Again", provenance=claim)
    assert other.name != draft.name
    (row, _) = await draft_rows(database, lib.account)
    assert (row.source_session_id, row.source_lane_item_id, row.source_ticket_ref) == (None, None, None)
    assert row.source_user_id == lib.user and row.created_by == lib.user
    approved = await lib.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name))
    assert approved.script_template.provenance == pb.Provenance(user=str(lib.user))
    assert approved.script_template.provenance_summary == f"resolved by {lib.user} · used 0 times"


async def test_imported_drafts_take_provenance_from_the_sessions_service(
    lib: Librarian, service_keys: dict[str, Keys], database: RunDatabase
) -> None:
    session, resolver = uuid.uuid4(), uuid.uuid4()
    request = session_scripts(session, "a1", "b2", resolved_by=resolver, ticket_ref="CW #31337")
    imported = await lib.import_scripts(_credential(service_keys, "sessions"), request)
    assert [d.provenance.lane_item for d in imported.draft_templates] == [
        f"sessions/{session}/laneItems/a1",
        f"sessions/{session}/laneItems/b2",
    ]
    rows = await draft_rows(database, lib.account)
    assert len(rows) == 2
    for row in rows:
        # The account is the token's; the creator is the service that attested the rest.
        assert row.account_id == lib.account
        assert row.created_by == service_user_id("sessions")
        assert (row.source_session_id, row.source_user_id, row.source_ticket_ref) == (
            session,
            resolver,
            "CW #31337",
        )
    assert {d.provenance.user_display_name for d in imported.draft_templates} == {""}  # none was sent
    # With the resolver's display name, the chip names the person, not the id.
    named = session_scripts(uuid.uuid4(), "c3", resolved_by=resolver, ticket_ref="CW #7")
    named.resolved_by_display_name = "Dana Engineer"
    [draft] = (await lib.import_scripts(_credential(service_keys, "sessions"), named)).draft_templates
    assert draft.provenance.user == str(resolver) and draft.provenance.user_display_name == "Dana Engineer"
    approved = await lib.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name))
    assert approved.script_template.provenance.user_display_name == "Dana Engineer"
    assert (
        approved.script_template.provenance_summary
        == "generated from CW #7 · resolved by Dana Engineer · used 0 times"
    )


async def test_only_the_sessions_service_acting_as_itself_imports(
    lib: Librarian, service_keys: dict[str, Keys], database: RunDatabase
) -> None:
    request = session_scripts(uuid.uuid4(), "a1", resolved_by=lib.user)
    # A genuine token of another service.
    await _fails(
        lib.import_scripts(_credential(service_keys, "walks"), request), grpc.StatusCode.PERMISSION_DENIED
    )
    # A token signed by the sessions service's key, but for someone other than itself.
    token = mint_token(
        private_key=service_keys["sessions"].private_pem,
        user_id=uuid.uuid4(),
        account_id=lib.account,
        role=Role.SERVICE,
        issuer=service_issuer("sessions"),
        audience=AUDIENCE,
        ttl_seconds=60,
    )
    await _fails(lib.import_scripts(token, request), grpc.StatusCode.PERMISSION_DENIED)
    # A user, however high: the role check.
    for role in (Role.ENGINEER, Role.SUPER_ADMIN):
        await _fails(
            lib.as_role(role).call("ImportSessionScripts", request), grpc.StatusCode.PERMISSION_DENIED
        )
    assert await draft_rows(database, lib.account) == []
