"""Resolution notes and escalation packages: the state-versioned cache, formats, posting."""

from __future__ import annotations

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2

from services.core.auth import Role
from tests.conftest import CountingBackend
from tests.sessions.helpers import Caller
from tests.support import Keys, failure


@pytest.fixture
def me(sessions_channel: grpc.aio.Channel, keys: Keys) -> Caller:
    return Caller(sessions_channel, keys)


async def _set(settings_channel: grpc.aio.Channel, caller: Caller, key: str, value: struct_pb2.Value) -> None:
    stub = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    await stub.UpdateSetting(
        settings_pb2.UpdateSettingRequest(setting=settings_pb2.Setting(name=f"settings/{key}", value=value)),
        metadata=caller.as_role(Role.TEAM_ADMIN).md,
    )


async def test_same_state_calls_the_model_once(me: Caller, ai_backend: CountingBackend) -> None:
    s = await me.session()
    await me.fact(s, "Account was locked by an old phone")
    first = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    second = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert not first.cached and second.cached
    assert first.text == second.text and first.state_version == second.state_version == 1
    assert "Account was locked by an old phone" in first.text
    assert first.format == "markdown" and first.text.startswith("## Resolution note")
    assert ai_backend.calls[s.ticket_ref] == 1
    await me.fact(s, "Removed the old phone from MFA")
    third = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert not third.cached and third.state_version == 2
    assert "Removed the old phone" in third.text
    assert ai_backend.calls[s.ticket_ref] == 2
    # The escalation package has its own cache entry.
    package = await me.call("PreviewEscalationPackage", pb.PreviewEscalationPackageRequest(name=s.name))
    assert package.text.startswith("## Escalation package") and not package.cached
    assert ai_backend.calls[s.ticket_ref] == 3


async def test_note_honours_the_format_setting(me: Caller, settings_channel: grpc.aio.Channel) -> None:
    await _set(settings_channel, me, "notes.format", struct_pb2.Value(string_value="html"))
    s = await me.session()
    await me.fact(s, "Printer <HP-4> queue stuck")
    note = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert note.format == "html"
    assert note.text.startswith("<h2>") and "&lt;HP-4&gt;" in note.text
    await _set(settings_channel, me, "notes.format", struct_pb2.Value(string_value="plain"))
    plain = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert plain.format == "plain" and not plain.cached and "<h2>" not in plain.text


async def test_redaction_follows_the_setting(me: Caller, settings_channel: grpc.aio.Channel) -> None:
    secret = "Password=Hunter2Secret!"
    s = await me.session()
    await me.fact(s, f"Connection string was Server=db1;User Id=sa;{secret}")
    redacted = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert "Hunter2Secret" not in redacted.text and "[REDACTED]" in redacted.text
    await _set(settings_channel, me, "notes.redact_sensitive", struct_pb2.Value(bool_value=False))
    await me.fact(s, "state changed")
    raw = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert "Hunter2Secret" in raw.text


async def test_posting_is_idempotent_and_reports_staleness(me: Caller) -> None:
    s = await me.session()
    await me.fact(s, "Fixed by re-registering MFA")
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Re-registered MFA"))
    posted = await me.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-77")
    )
    note = posted.resolution_note
    assert note.external_id == "CW-NOTE-77" and not note.stale
    assert "Re-registered MFA" in note.markdown
    assert note.state_version == posted.state_version
    again = await me.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-77")
    )
    assert again.resolution_note == note
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await me.call(
            "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-78")
        )
    error = failure(caught.value)
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION and error.reason == "ALREADY_POSTED"
    # The package is separate, and a later change makes the posted note stale.
    other = await me.session()
    await me.call("PostEscalationPackage", pb.PostEscalationPackageRequest(name=other.name, external_id="E1"))
    await me.fact(other, "new information")
    reread = await me.get(other)
    assert reread.escalation_package.external_id == "E1" and reread.escalation_package.stale
    assert not reread.HasField("resolution_note")
