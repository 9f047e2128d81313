"""Where a draft's provenance comes from: the verified caller, never a claim.

Provenance (source session, lane item, ticket and user) ends up on the
template a draft becomes, as the chip "generated from CW #X · resolved by Y",
so it must be something the library can trust:

- A draft made by hand (``CreateDraftTemplate``) has the caller as its source
  user and no session, lane item or ticket: nothing a user sends can prove
  those, so ``DraftTemplate.provenance`` is output only and ignored on input
  (AIP-203).
- Drafts from a resolved session arrive only through ``ImportSessionScripts``,
  called by the sessions service with its own token for one account. The
  account is the token's; the session, lane items, ticket and resolving user
  are what that service attests; the draft's creator is that service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.core import ids, names
from services.core.auth import Principal, Role, service_user_id
from services.core.errors import PermissionDenied
from services.library import convert

# The ``sub`` of the sessions service's own tokens: the only caller whose word
# on a session is taken.
SESSIONS_SERVICE = service_user_id("sessions")


@dataclass(frozen=True, slots=True)
class DraftSource:
    """The provenance columns of a new draft."""

    account_id: uuid.UUID
    created_by: uuid.UUID
    source_user_id: uuid.UUID
    source_user_name: str | None = None
    source_session_id: uuid.UUID | None = None
    source_ticket_ref: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "created_by": self.created_by,
            "source_user_id": self.source_user_id,
            "source_user_name": self.source_user_name,
            "source_session_id": self.source_session_id,
            "source_ticket_ref": self.source_ticket_ref,
        }


def by_hand(principal: Principal) -> DraftSource:
    """A draft the caller creates: theirs, from no session."""
    return DraftSource(
        account_id=principal.account_id,
        created_by=principal.user_id,
        source_user_id=principal.user_id,
        source_user_name=principal.display_name or None,
    )


def from_session(
    principal: Principal, *, session: str, resolved_by: str, resolved_by_name: str, ticket_ref: str
) -> tuple[uuid.UUID, DraftSource]:
    """The session's id and the source of its drafts (``session`` is
    ``sessions/{session}``), as the sessions service attests them. Anyone else
    is PERMISSION_DENIED, before the request is read."""
    if principal.role is not Role.SERVICE or principal.user_id != SESSIONS_SERVICE:
        raise PermissionDenied("only the sessions service, acting as itself, imports session scripts")
    session_id = ids.parse_uuid(
        names.parse(session, convert.SESSION, field="session")["session"],
        field="session",
        what="session name",
    )
    return session_id, DraftSource(
        account_id=principal.account_id,
        created_by=principal.user_id,
        source_user_id=ids.parse_uuid(resolved_by, field="resolved_by", what="user id"),
        source_user_name=resolved_by_name.strip() or None,
        source_session_id=session_id,
        source_ticket_ref=ticket_ref or None,
    )
