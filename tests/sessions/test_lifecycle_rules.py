"""The lifecycle's rules over typed rows: active-only changes, etags, the
one move out of active, a new session's facts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.core.errors import Aborted, FailedPrecondition, InvalidArgument
from services.sessions import lifecycle
from tests.sessions.rows_for_tests import NOW, session


def test_only_an_active_session_changes() -> None:
    lifecycle.require_active(session())
    with pytest.raises(FailedPrecondition) as caught:
        lifecycle.require_active(session(status="resolved"))
    assert caught.value.reason == "SESSION_NOT_ACTIVE"
    assert caught.value.metadata == {"status": "resolved"}
    assert "session is resolved" in str(caught.value)


def test_an_etag_applies_only_to_the_state_it_was_read_at() -> None:
    lifecycle.check_etag(session(state_version=3), None)
    lifecycle.check_etag(session(state_version=3), 3)
    with pytest.raises(Aborted) as caught:
        lifecycle.check_etag(session(state_version=4), 3)
    assert caught.value.reason == "ETAG_MISMATCH"


@pytest.mark.parametrize("status", sorted(lifecycle.ENDS))
def test_an_active_session_ends_once(status: str) -> None:
    lifecycle.check_transition(session(), status)
    for ended in lifecycle.ENDS:
        with pytest.raises(FailedPrecondition) as caught:
            lifecycle.check_transition(session(status=ended), status)
        assert caught.value.reason == "INVALID_TRANSITION"
        assert caught.value.metadata == {"status": ended}
        assert f"cannot move a {ended} session to {status}" in str(caught.value)


def test_a_new_session_has_no_task_lane_to_refer_to() -> None:
    lifecycle.check_first_facts([("a", "user"), ("b", "ai")])
    with pytest.raises(InvalidArgument) as caught:
        lifecycle.check_first_facts([("a", "user"), ("b", "task_lane")])
    assert [v.field for v in caught.value.violations] == ["facts"]


def test_first_facts_keep_the_request_order() -> None:
    times = lifecycle.fact_times(NOW, 3)
    assert times == [NOW, NOW + timedelta(microseconds=1), NOW + timedelta(microseconds=2)]
    assert lifecycle.fact_times(NOW, 0) == []
