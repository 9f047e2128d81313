"""The catalogue of settings: every key, its type, default, limits and owner.

This is the single source of truth for what a setting is. The service
validates every write against it and answers reads with its defaults; other
services read settings through the settings service, never from here.

A key that is not in the catalogue names a setting that does not exist, so
every RPC answers NOT_FOUND for it (AIP-131, AIP-134): a read, a reset, and an
update whatever value it sets (there is no entry to check the value against).
"""

from __future__ import annotations

import enum
import functools
import zoneinfo
from dataclasses import dataclass

from services.core.auth import Role
from services.core.errors import FieldViolation, InvalidArgument, not_found

Value = bool | int | str


class Kind(enum.Enum):
    BOOL = 1
    INTEGER = 2
    ENUM = 3
    TIME_ZONE = 4


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    kind: Kind
    default: Value
    description: str
    allowed: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = 0
    update_role: Role = Role.TEAM_ADMIN

    def validate(self, value: object, *, field_path: str) -> Value:
        """The value in its canonical Python type, or INVALID_ARGUMENT."""

        def bad(description: str) -> InvalidArgument:
            return InvalidArgument(FieldViolation(field_path, description))

        if self.kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise bad(f"{self.key} takes true or false")
            return value
        if self.kind is Kind.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(f"{self.key} takes a whole number")
            if isinstance(value, float) and not value.is_integer():
                raise bad(f"{self.key} takes a whole number")
            number = int(value)
            if not self.minimum <= number <= self.maximum:
                raise bad(f"{self.key} must be between {self.minimum} and {self.maximum}")
            return number
        if self.kind is Kind.TIME_ZONE:
            if not isinstance(value, str) or value not in _time_zones():
                raise bad(f"{self.key} takes an IANA time zone name, e.g. Europe/Berlin or UTC")
            return value
        if not isinstance(value, str) or value not in self.allowed:
            raise bad(f"{self.key} must be one of: {', '.join(self.allowed)}")
        return value


CATALOGUE: dict[str, Entry] = {
    e.key: e
    for e in (
        Entry(
            key="ai.model_tier",
            kind=Kind.ENUM,
            default="auto",
            allowed=("auto", "fast", "deep"),
            description="Which AI model tier answers: auto picks by the size and difficulty "
            "of the work, fast is quickest, deep reasons longest.",
        ),
        Entry(
            key="ai.monthly_token_budget",
            kind=Kind.INTEGER,
            default=0,
            minimum=0,
            maximum=1_000_000_000,
            description="AI tokens (input and output) the account's copilot may use per calendar month "
            "(UTC); 0 is unlimited. Once spent, the copilot answers RESOURCE_EXHAUSTED until the first "
            "of next month; fix suggestions and notes are not counted.",
        ),
        Entry(
            key="library.auto_draft_scripts",
            kind=Kind.BOOL,
            default=True,
            description="When a session is resolved, turn its successful scripts into draft "
            "templates for review.",
        ),
        Entry(
            key="notes.format",
            kind=Kind.ENUM,
            default="markdown",
            allowed=("markdown", "plain", "html"),
            description="Format of generated resolution notes and escalation packages.",
        ),
        Entry(
            key="notes.redact_sensitive",
            kind=Kind.BOOL,
            default=True,
            description="Redact passwords, keys, tokens and connection strings before they "
            "reach a model and in generated notes.",
        ),
        Entry(
            key="notes.time_zone",
            kind=Kind.TIME_ZONE,
            default="UTC",
            description="The time zone of the times in notes and escalation packages (an IANA name, "
            "e.g. Europe/Berlin).",
        ),
        Entry(
            key="psa.post_as_internal_note",
            kind=Kind.BOOL,
            default=True,
            description="Post notes to the PSA ticket as internal notes rather than customer-visible ones.",
        ),
        Entry(
            key="sessions.stale_after_hours",
            kind=Kind.INTEGER,
            default=72,
            minimum=1,
            maximum=2160,
            description="An active session with no change for this many hours is abandoned by the "
            "stale-session sweep.",
        ),
        Entry(
            key="walks.stale_after_hours",
            kind=Kind.INTEGER,
            default=4,
            minimum=1,
            maximum=168,
            description="An L1 walk with no step for this many hours is abandoned by the stale-walk sweep.",
        ),
    )
}

KEYS = sorted(CATALOGUE)


def find(key: str, *, name: str) -> Entry:
    """The entry of ``key``; NOT_FOUND (naming the resource ``name``) when the
    catalogue has no such key."""
    entry = CATALOGUE.get(key)
    if entry is None:
        raise not_found("setting", name)
    return entry
