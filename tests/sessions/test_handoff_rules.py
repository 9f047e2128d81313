"""The handoff's rules over typed rows: who may change a session, claiming,
assigning, and a new session's first assignee."""

from __future__ import annotations

import uuid

import pytest

from services.core.auth import Principal, Role
from services.core.errors import FailedPrecondition, PermissionDenied
from services.sessions import handoff, lifecycle
from services.sessions.handoff import Assignment, Person
from tests.sessions.rows_for_tests import session

ACCOUNT = uuid.UUID(int=9)
CREATOR = uuid.UUID(int=2)  # rows_for_tests' creator
ALICE, BOB = uuid.UUID(int=10), uuid.UUID(int=11)


def caller(user: uuid.UUID, role: Role = Role.ENGINEER, name: str = "") -> Principal:
    return Principal(user_id=user, account_id=ACCOUNT, role=role, token="t", display_name=name)


def test_a_new_session_is_its_creators_unless_an_escalation_opened_it() -> None:
    creator = Person(CREATOR, "Lee")
    assert handoff.first_assignee(creator, escalated=False) == creator
    assert handoff.first_assignee(creator, escalated=True) is None


@pytest.mark.parametrize(
    ("assignee", "user", "role", "allowed"),
    [
        (None, CREATOR, Role.ENGINEER, True),  # unassigned: its creator
        (None, ALICE, Role.ENGINEER, False),  # unassigned: nobody else but admins
        (ALICE, ALICE, Role.ENGINEER, True),  # the assignee
        (ALICE, CREATOR, Role.ENGINEER, False),  # the creator, once someone else has it
        (ALICE, BOB, Role.ENGINEER, False),
        (ALICE, BOB, Role.TEAM_ADMIN, True),  # team admins always
        (None, BOB, Role.SUPER_ADMIN, True),
        (ALICE, BOB, Role.VIEWER, False),
    ],
)
def test_who_may_change_a_session(
    assignee: uuid.UUID | None, user: uuid.UUID, role: Role, allowed: bool
) -> None:
    row = session(assignee=assignee, assignee_name="Alice" if assignee else None)
    assert handoff.may_change(row, caller(user, role)) is allowed
    if allowed:
        handoff.require_worker(row, caller(user, role))
        return
    with pytest.raises(PermissionDenied) as caught:
        handoff.require_worker(row, caller(user, role))
    assert caught.value.reason == "NOT_SESSION_ASSIGNEE"
    expected = "assigned to Alice" if assignee else "waits in the team queue; claim it"
    assert expected in caught.value.message


def test_a_change_checks_who_before_whether_active() -> None:
    ended = session(status="resolved", assignee=ALICE)
    with pytest.raises(PermissionDenied):
        lifecycle.require_writable(ended, caller(BOB))
    with pytest.raises(FailedPrecondition) as caught:
        lifecycle.require_writable(ended, caller(ALICE))
    assert caught.value.reason == "SESSION_NOT_ACTIVE"


def test_claiming() -> None:
    queued = session(assignee=None)
    assert handoff.claimed(queued, caller(ALICE, name="Alice")) == Person(ALICE, "Alice")
    assert handoff.claimed(queued, caller(ALICE)) == Person(ALICE, None)
    mine = session(assignee=ALICE, assignee_name="Alice")
    assert handoff.claimed(mine, caller(ALICE, name="Alice")) is None  # nothing changes
    assert handoff.claimed(mine, caller(ALICE, name="Alice B.")) == Person(ALICE, "Alice B.")
    with pytest.raises(FailedPrecondition) as caught:
        handoff.claimed(mine, caller(BOB, name="Bob"))
    assert caught.value.reason == "ALREADY_ASSIGNED"
    assert caught.value.metadata == {"assignee": str(ALICE)}
    assert "assigned to Alice" in caught.value.message
    # A team admin takes it over.
    assert handoff.claimed(mine, caller(BOB, Role.TEAM_ADMIN, "Bob")) == Person(BOB, "Bob")


def test_assigning() -> None:
    admin = caller(BOB, Role.TEAM_ADMIN, "Bob")
    queued = session(assignee=None)
    assert handoff.assigned(queued, admin, Assignment(ALICE, "Alice")) == (True, Person(ALICE, "Alice"))
    assert handoff.assigned(queued, admin, Assignment(ALICE)) == (True, Person(ALICE, None))
    assert handoff.assigned(queued, admin, Assignment(BOB)) == (True, Person(BOB, "Bob"))  # themselves
    assert handoff.assigned(queued, admin, Assignment(None)) == (False, None)
    alices = session(assignee=ALICE, assignee_name="Alice")
    # The same person again: the recorded name stays unless another is given.
    assert handoff.assigned(alices, admin, Assignment(ALICE)) == (False, Person(ALICE, "Alice"))
    assert handoff.assigned(alices, admin, Assignment(ALICE, "Alice C.")) == (True, Person(ALICE, "Alice C."))
    assert handoff.assigned(alices, admin, Assignment(None)) == (True, None)
