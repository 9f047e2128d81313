"""Handoff: who works a session, the team queue, and who may change a session.

- **Assignee.** A session someone starts for themselves is assigned to them.
  A session an L1 walk's escalation opens (``escalated_walk``) starts
  unassigned: it waits in the team queue (``ListSessions`` with
  ``unassigned``), the escalating technician recorded as its creator.
- **Who may change a session** (title and problem, facts, task lane, fixes,
  resolve, escalate, abandon, posting its note or package): its assignee;
  while it is unassigned, its creator (the L1 technician can still add to
  their escalation until someone picks it up); a team admin always. Everyone
  else in the account reads it only: PERMISSION_DENIED, reason
  ``NOT_SESSION_ASSIGNEE``. (Another account's session is NOT_FOUND before
  any of this.)
- **Claim** (engineers): an unassigned session, or one already the caller's,
  becomes the caller's; one assigned to someone else is FAILED_PRECONDITION
  ``ALREADY_ASSIGNED`` unless the caller is a team admin, who takes it over.
- **Assign** (team admins): to a user id (identity is owned upstream: the id
  is recorded as given) or to nobody, back to the queue.
- Claim and assign need an active session and honour the etag. A change of
  assignee (or of the name recorded for them) bumps the state version: the
  notes name who worked the session, and the state version is the session's
  etag, so an assigner holding an old etag is ABORTED instead of silently
  overwriting another's assignment. Claiming a session already the caller's
  under the same name changes nothing.

The rules are plain functions over typed rows; :mod:`lifecycle` applies them
to a session locked for the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.core.auth import Principal, Role, service_user_id
from services.core.errors import FailedPrecondition, PermissionDenied
from services.sessions.rows import Session

ADMINS = frozenset({Role.TEAM_ADMIN, Role.SUPER_ADMIN})


@dataclass(frozen=True, slots=True)
class Person:
    """A user id and the display name recorded beside it (None: none known)."""

    id: uuid.UUID
    name: str | None


# Who the stale-session sweep records as the closer of what it abandons.
SWEEP = Person(service_user_id("sessions"), "FlowPilot (stale-session sweep)")


def person(principal: Principal) -> Person:
    """The caller as recorded: their id and their token's display name, if any."""
    return Person(principal.user_id, principal.display_name or None)


def is_admin(principal: Principal) -> bool:
    return principal.role in ADMINS


# --- rules over rows ---------------------------------------------------------------


def first_assignee(creator: Person, *, escalated: bool) -> Person | None:
    """Who a new session is assigned to: its creator, unless an escalated walk
    opened it (then nobody: the team queue)."""
    return None if escalated else creator


def assignee_of(session: Session) -> Person | None:
    return None if session.assignee is None else Person(session.assignee, session.assignee_name)


def may_change(session: Session, principal: Principal) -> bool:
    """Whether ``principal`` may change ``session`` (see the module's rules)."""
    if is_admin(principal):
        return True
    if session.assignee is not None:
        return session.assignee == principal.user_id
    return session.created_by == principal.user_id


def require_worker(session: Session, principal: Principal) -> None:
    """PERMISSION_DENIED unless ``principal`` may change ``session``."""
    if may_change(session, principal):
        return
    name = f"sessions/{session.id}"
    if session.assignee is None:
        message = f"{name} waits in the team queue; claim it to work on it"
    else:
        who = session.assignee_name or str(session.assignee)
        message = f"{name} is assigned to {who}; only they or a team admin can change it"
    raise PermissionDenied(
        message,
        reason="NOT_SESSION_ASSIGNEE",
        metadata={"assignee": str(session.assignee or "")},
    )


def claimed(session: Session, principal: Principal) -> Person | None:
    """The session's assignee after ``principal`` claims it, or None when the
    claim changes nothing (already theirs, under the same name)."""
    current = assignee_of(session)
    caller = person(principal)
    if current is not None and current.id != caller.id and not is_admin(principal):
        raise FailedPrecondition(
            f"sessions/{session.id} is assigned to {current.name or current.id}; "
            "a team admin can assign it to you",
            reason="ALREADY_ASSIGNED",
            metadata={"assignee": str(current.id)},
        )
    return None if current == caller else caller


@dataclass(frozen=True, slots=True)
class Assignment:
    """An AssignSession request, decoded: the user (None: unassign) and the
    display name the caller gave for them (None: none given)."""

    user: uuid.UUID | None
    name: str | None = None


def assigned(session: Session, principal: Principal, assignment: Assignment) -> tuple[bool, Person | None]:
    """(whether the assignment changes the session, its assignee after it).

    The name recorded is the one given; else the caller's own when they assign
    themselves; else the one already recorded for the same assignee."""
    current = assignee_of(session)
    if assignment.user is None:
        return current is not None, None
    name = assignment.name
    if name is None and assignment.user == principal.user_id:
        name = principal.display_name or None
    if name is None and current is not None and current.id == assignment.user:
        name = current.name
    after = Person(assignment.user, name)
    return after != current, after
