"""Rules of the task lane, facts, fixes, drafts and notes over typed rows,
without gRPC or a database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from services.core.auth import Principal, Role
from services.core.errors import FailedPrecondition, InvalidArgument
from services.sessions import drafts, facts, fixes, lane, notes
from services.sessions.rows import NoteKind, Posting
from tests.sessions.rows_for_tests import NOW, fact, fix, item, session

# --- lane -------------------------------------------------------------------


def test_only_script_items_carry_a_script() -> None:
    lane.check_script("script", has_body=True, has_language=True)
    lane.check_script("check", has_body=False, has_language=False)
    for has_body, has_language in ((True, False), (False, True), (True, True)):
        with pytest.raises(InvalidArgument) as caught:
            lane.check_script("check", has_body=has_body, has_language=has_language)
        assert [v.field for v in caught.value.violations] == ["lane_item.script_body"]
    with pytest.raises(InvalidArgument) as caught:
        lane.check_script("script", has_body=True, has_language=False)
    assert [v.field for v in caught.value.violations] == ["lane_item.script_language"]


def test_a_lane_holds_a_bounded_number_of_items() -> None:
    lane.check_room([item(str(i)) for i in range(lane.MAX_LANE_ITEMS - 1)])
    with pytest.raises(FailedPrecondition) as caught:
        lane.check_room([item(str(i)) for i in range(lane.MAX_LANE_ITEMS)])
    assert caught.value.reason == "LANE_FULL"


def test_a_lane_holds_a_bounded_amount_of_content() -> None:
    half = lane.MAX_LANE_BYTES // 2
    lane.check_size([item("a", detail="x" * half), item("b", output="y" * half)])
    with pytest.raises(FailedPrecondition) as caught:
        lane.check_size([item("a", detail="x" * half), item("b", output="y" * (half + 1))])
    assert caught.value.reason == "LANE_FULL"


def test_content_is_counted_in_utf8_bytes() -> None:
    assert lane.content_bytes(item(detail="é", script_body="ab", output="")) == 4
    assert not lane.has_content(item())
    assert lane.has_content(item(output="ok"))


def test_a_change_applies_to_a_copy_of_the_lane() -> None:
    original = [item("a"), item("b")]
    result = lane.changed(original, "b", {"status": "done", "output": "ok"}, "2026-12-01T12:00:00+00:00")
    assert result is not None
    changed_lane, changed_item = result
    assert changed_item == {
        **item("b"),
        "status": "done",
        "output": "ok",
        "update_time": "2026-12-01T12:00:00+00:00",
    }
    assert changed_lane == [item("a"), changed_item]
    assert original == [item("a"), item("b")]
    assert lane.changed(original, "zz", {"status": "done"}, "now") is None


# --- facts ------------------------------------------------------------------


def test_a_fact_from_the_task_lane_names_its_item() -> None:
    facts.require_ref("user", None, "fact.source_ref")
    facts.require_ref("task_lane", "a1", "fact.source_ref")
    with pytest.raises(InvalidArgument) as caught:
        facts.require_ref("task_lane", None, "fact.source_ref")
    assert [v.field for v in caught.value.violations] == ["fact.source_ref"]


def test_a_reference_names_an_item_of_the_sessions_lane() -> None:
    row = session(pending_task_lane=[item("a1")])
    facts.check_ref(row, None, "fact.source_ref")
    facts.check_ref(row, "a1", "fact.source_ref")
    with pytest.raises(InvalidArgument):
        facts.check_ref(row, "b2", "fact.source_ref")


def test_deleting_twice_changes_nothing_and_undeleting_needs_a_deleted_fact() -> None:
    assert facts.needs_change(fact(), deleted=True)
    assert not facts.needs_change(fact(delete_time=NOW), deleted=True)
    assert facts.needs_change(fact(delete_time=NOW), deleted=False)
    with pytest.raises(FailedPrecondition) as caught:
        facts.needs_change(fact(), deleted=False)
    assert caught.value.reason == "FACT_NOT_DELETED"
    with pytest.raises(FailedPrecondition) as caught:
        facts.require_not_deleted(fact(delete_time=NOW))
    assert caught.value.reason == "FACT_DELETED"


# --- fixes ------------------------------------------------------------------


def test_a_fix_that_cannot_be_decided_says_why() -> None:
    assert "fix is superseded" in str(fixes.not_open(fix(supersede_time=NOW)))
    assert "fix is accepted" in str(fixes.not_open(fix(status="accepted")))
    assert fixes.not_open(fix()).reason == "FIX_NOT_OPEN"


# --- drafts -----------------------------------------------------------------


def test_only_scripts_that_worked_become_drafts() -> None:
    worked = item("s1", kind="script", status="done", script_body="Get-Date", script_language="powershell")
    row = session(
        pending_task_lane=[
            worked,
            {**worked, "id": "s2", "status": "failed"},
            {**worked, "id": "s3", "script_body": ""},
            {**worked, "id": "s4", "script_language": ""},
            item("c1", status="done"),
        ]
    )
    assert drafts.drafted(row) == [worked]
    user = Principal(
        user_id=uuid.UUID(int=9),
        account_id=uuid.UUID(int=1),
        role=Role.ENGINEER,
        token="",
        display_name="Dana",
    )
    assert drafts.dedupe_key(row, worked) == f"{row.id}/s1"
    assert drafts.payload(row, worked, user) == {
        "session": f"sessions/{row.id}",
        "resolved_by": str(user.user_id),
        "resolved_by_display_name": "Dana",
        "ticket_ref": "CW-1",
        "scripts": [
            {
                "lane_item": f"sessions/{row.id}/laneItems/s1",
                "script_body": "Get-Date",
                "language": "powershell",
                "title": "Ping the gateway",
            }
        ],
    }


# --- notes ------------------------------------------------------------------


def test_a_new_post_of_an_unchanged_state_is_refused_and_a_changed_one_is_a_correction() -> None:
    row = session(state_version=3)
    notes.check_correction(row, NoteKind.RESOLUTION_NOTE)  # never posted: fine
    posted = replace(
        row,
        resolution_note=Posting(
            markdown="x", post_time=NOW, external_id="PSA-1", state_version=3, revision=1
        ),
    )
    with pytest.raises(FailedPrecondition) as caught:
        notes.check_correction(posted, NoteKind.RESOLUTION_NOTE)
    assert caught.value.reason == "ALREADY_POSTED"
    assert caught.value.metadata == {"external_id": "PSA-1"}
    notes.check_correction(posted, NoteKind.ESCALATION_PACKAGE)  # the other document: not posted
    notes.check_correction(replace(posted, state_version=4), NoteKind.RESOLUTION_NOTE)  # stale: a correction


BERLIN = ZoneInfo("Europe/Berlin")


def test_history_tells_accepted_rejected_and_open_fixes_apart_with_who_and_when() -> None:
    later = NOW + timedelta(minutes=30)
    row = session(
        status="resolved",
        created_by_name="Dana Engineer",
        closed_by=uuid.UUID(int=9),
        closed_by_name="Dana Engineer",
        end_time=later + timedelta(minutes=5),
        resolution_summary="Cleared the cache",
        pending_task_lane=[
            item(
                "a1", status="failed", output="timeout", update_time=(NOW + timedelta(minutes=1)).isoformat()
            ),
            item("a2", title="Reboot", status="pending"),
        ],
    )
    history = notes.history(
        row,
        [fact(text="VPN drops every 10 minutes", create_time=NOW + timedelta(seconds=30))],
        [
            fix(
                id=uuid.UUID(int=10),
                title="Clear Teams cache",
                status="rejected",
                decided_by=uuid.UUID(int=5),
                decided_by_name=None,
                decide_time=NOW + timedelta(minutes=10),
                reject_reason="tried last week",
                supersede_time=NOW + timedelta(minutes=20),
            ),
            fix(
                id=uuid.UUID(int=11),
                title="Raise the MTU",
                status="accepted",
                decided_by_name="Sam Lead",
                decide_time=later,
                create_time=NOW + timedelta(minutes=20),
            ),
        ],
        BERLIN,
    )
    assert history.time_zone == "Europe/Berlin"
    applied = history.applied_fix()
    assert applied is not None and applied.title == "Raise the MTU"
    [ruled_out] = history.ruled_out()
    assert ruled_out.decided_by == str(uuid.UUID(int=5))  # no name recorded: the id
    assert ruled_out.reject_reason == "tried last week"
    assert history.open_proposals() == ()
    assert history.lane[0].at == "2026-12-01 13:01 CET" and history.lane[1].at == ""
    texts = [(e.at, e.text) for e in history.timeline]
    assert texts[0] == ("2026-12-01 13:00 CET", "Session started by Dana Engineer")
    assert (
        "2026-12-01 13:10 CET",
        "Fix ruled out by " + str(uuid.UUID(int=5)) + ": Clear Teams cache (tried last week)",
    ) in texts
    assert ("2026-12-01 13:30 CET", "Fix accepted by Sam Lead: Raise the MTU") in texts
    assert texts[-1] == ("2026-12-01 13:35 CET", "Resolved by Dana Engineer")
    assert [e.at for e in history.timeline] == sorted(e.at for e in history.timeline)


def test_a_fix_never_decided_is_an_open_proposal_not_an_applied_one() -> None:
    history = notes.history(session(), [], [fix(status="proposed")], ZoneInfo("UTC"))
    assert history.applied_fix() is None
    assert [f.title for f in history.open_proposals()] == ["Raise the MTU"]
