"""Resolution notes and escalation packages: the state-versioned cache, formats, posting."""

from __future__ import annotations

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2

from services.core.auth import Role
from tests.conftest import CountingBackend
from tests.sessions.helpers import Caller, mask
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


# --- notes that tell what happened ----------------------------------------------------

FORMATS = {"markdown": "**{}**", "plain": "{}:", "html": "<h3>{}</h3>"}


async def _failed_check(caller: Caller, s: pb.Session, title: str) -> None:
    item = await caller.lane_item(s, kind=pb.LANE_ITEM_KIND_CHECK, title=title)
    await caller.call(
        "UpdateLaneItem",
        pb.UpdateLaneItemRequest(
            lane_item=pb.LaneItem(name=item.name, status=pb.LANE_ITEM_STATUS_FAILED, output="timeout"),
            update_mask=mask("status", "output"),
        ),
    )


async def _with_history(me: Caller) -> pb.Session:
    """A session with failed checks, a fix rejected with a reason, a fix
    accepted, and a fix suggested last and never decided (the offline model
    names each fix after the newest failed check)."""
    dana = me.named("Dana Engineer")
    s = await dana.session()
    await dana.fact(s, "Teams cache is 4 GB")
    await _failed_check(dana, s, "Ping the file server")
    first = await dana.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    await dana.call("RejectFix", pb.RejectFixRequest(name=first.name, reason="already tried by the user"))
    await _failed_check(dana, s, "Clear the Teams cache")
    second = await dana.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    await me.named("Sam Lead").call("AcceptFix", pb.AcceptFixRequest(name=second.name))
    await _failed_check(dana, s, "Reinstall Teams")
    await dana.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))  # open: never decided
    return s


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_the_note_tells_accepted_rejected_and_open_fixes_apart(
    me: Caller, settings_channel: grpc.aio.Channel, fmt: str
) -> None:
    await _set(settings_channel, me, "notes.format", struct_pb2.Value(string_value=fmt))
    await _set(settings_channel, me, "notes.time_zone", struct_pb2.Value(string_value="Europe/Berlin"))
    s = await _with_history(me)
    fixes = (await me.call("ListFixes", pb.ListFixesRequest(parent=s.name))).fixes
    rejected, accepted, open_ = sorted(fixes, key=lambda f: f.create_time.ToDatetime())
    assert rejected.reject_reason == "already tried by the user" and rejected.decider == str(me.user)
    assert accepted.decider_display_name == "Sam Lead"
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Cleared the cache"))
    text = (await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))).text
    heading = FORMATS[fmt]
    applied = text.split(heading.format("Fix applied"))[1].split(heading.format("Tried / ruled out"))[0]
    assert accepted.title in applied and "accepted by Sam Lead" in applied
    assert rejected.title not in applied and open_.title not in applied
    ruled_out = text.split(heading.format("Tried / ruled out"))[1].split(
        heading.format("Suggested, not applied")
    )[0]
    assert rejected.title in ruled_out and "already tried by the user" in ruled_out
    assert "Dana Engineer" in ruled_out  # who ruled it out
    suggested = text.split(heading.format("Suggested, not applied"))[1]
    assert open_.title in suggested.split(heading.format("Resolution"))[0]
    # Outcomes and a timeline, in the account's time zone.
    assert "Check Ping the file server — failed" in text and "timeout" in text
    assert len({rejected.title, accepted.title, open_.title}) == 3
    assert heading.format("Timeline (Europe/Berlin)") in text
    assert "Session started by Dana Engineer" in text and "Resolved by" in text
    assert " CET" in text or " CEST" in text


async def test_a_rejected_fix_is_never_reported_as_applied(me: Caller) -> None:
    s = await me.session()
    fix = await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    await me.call("RejectFix", pb.RejectFixRequest(name=fix.name))
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Rebooted"))
    text = (await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))).text
    assert "Fix applied" not in text
    assert f"{fix.title} — ruled out" in text
    package = await me.call("PreviewEscalationPackage", pb.PreviewEscalationPackageRequest(name=s.name))
    assert "Fix applied" not in package.text and "Tried / ruled out" in package.text


async def test_a_blank_reason_is_none_and_a_long_one_is_refused(me: Caller) -> None:
    s = await me.session()
    fix = await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await me.call("RejectFix", pb.RejectFixRequest(name=fix.name, reason="x" * 2001))
    assert failure(caught.value).violations.keys() == {"reason"}
    rejected = await me.call("RejectFix", pb.RejectFixRequest(name=fix.name, reason="   "))
    assert rejected.reject_reason == "" and rejected.status == pb.FIX_STATUS_REJECTED


async def test_an_unknown_time_zone_is_refused(me: Caller, settings_channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _set(settings_channel, me, "notes.time_zone", struct_pb2.Value(string_value="Mars/Olympus"))
    assert failure(caught.value).code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError):
        await _set(settings_channel, me, "notes.time_zone", struct_pb2.Value(string_value="../etc/passwd"))


# --- revisions ---------------------------------------------------------------------


async def test_a_stale_posted_note_is_corrected_by_a_new_revision(me: Caller) -> None:
    poster = me.named("Dana Engineer")
    s = await poster.session()
    first = await poster.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-1")
    )
    assert (
        first.resolution_note.revision == 1 and first.resolution_note.poster_display_name == "Dana Engineer"
    )
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Replaced the router"))
    assert (await me.get(s)).resolution_note.stale
    corrected = await me.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-2")
    )
    note = corrected.resolution_note
    assert note.revision == 2 and note.external_id == "CW-NOTE-2" and not note.stale
    assert "Replaced the router" in note.markdown
    # The first id again is a retry of revision 1: nothing new is recorded.
    again = await me.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-1")
    )
    assert again.resolution_note == note
    # The current state posted already: a third id is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await me.call(
            "PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-3")
        )
    assert failure(caught.value).reason == "ALREADY_POSTED"
    history = await me.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=s.name))
    assert [(r.revision, r.external_id) for r in history.note_revisions] == [
        (1, "CW-NOTE-1"),
        (2, "CW-NOTE-2"),
    ]
    assert "Replaced the router" not in history.note_revisions[0].text
    assert history.note_revisions[1].text == note.markdown
    assert history.note_revisions[0].poster_display_name == "Dana Engineer"
    assert history.note_revisions[1].poster == str(me.user) and history.note_revisions[1].format == "markdown"
    # Paged and filtered.
    page = await me.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=s.name, page_size=1))
    assert len(page.note_revisions) == 1 and page.next_page_token
    rest = await me.call(
        "ListNoteRevisions",
        pb.ListNoteRevisionsRequest(parent=s.name, page_size=1, page_token=page.next_page_token),
    )
    assert rest.note_revisions[0].revision == 2
    packages = await me.call(
        "ListNoteRevisions",
        pb.ListNoteRevisionsRequest(parent=s.name, kind=pb.NOTE_KIND_ESCALATION_PACKAGE),
    )
    assert list(packages.note_revisions) == []


async def test_revisions_of_another_account_are_not_found(me: Caller, keys: Keys) -> None:
    s = await me.session()
    await me.call("PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="N1"))
    stranger = Caller(me.channel, keys)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stranger.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=s.name))
    assert failure(caught.value).code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await me.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent="sessions/nope"))
    assert failure(caught.value).violations.keys() == {"parent"}


async def test_another_time_zone_is_another_note(me: Caller, settings_channel: grpc.aio.Channel) -> None:
    s = await me.session()
    utc = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert "Timeline (UTC)" in utc.text
    await _set(settings_channel, me, "notes.time_zone", struct_pb2.Value(string_value="Asia/Tokyo"))
    tokyo = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert not tokyo.cached and "Timeline (Asia/Tokyo)" in tokyo.text and " JST" in tokyo.text
    assert tokyo.state_version == utc.state_version
    again = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert again.cached and again.text == tokyo.text
