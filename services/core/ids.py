"""Identifiers and etags: the one parser of each for every service.

A UUID is accepted only in its canonical text form (lower case, hyphenated,
ASCII): ``{…}``, ``urn:uuid:…``, upper case, no hyphens or fullwidth digits
would otherwise be aliases of the same id. An etag is the decimal text of a
non-negative 63-bit revision, as the services write it.
"""

from __future__ import annotations

import re
import uuid

from services.core.errors import FieldViolation, InvalidArgument

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
# Up to 18 ASCII digits always fits a PostgreSQL bigint.
_ETAG = re.compile(r"(0|[1-9][0-9]{0,17})", re.ASCII)


def canonical_uuid(value: object) -> uuid.UUID | None:
    """The UUID ``value`` spells in canonical form, else None."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return uuid.UUID(value)
    return None


def parse_uuid(value: str, *, field: str, what: str = "UUID") -> uuid.UUID:
    """A canonical UUID from a request; INVALID_ARGUMENT naming ``field`` otherwise."""
    parsed = canonical_uuid(value)
    if parsed is None:
        raise InvalidArgument(FieldViolation(field, f"is not a valid {what} (a lower-case hyphenated UUID)"))
    return parsed


def parse_etag(value: str, *, field: str) -> int | None:
    """The revision an etag names, or None when no etag was sent.

    Malformed is INVALID_ARGUMENT; whether a well-formed etag is stale is the
    caller's check (ABORTED).
    """
    if not value:
        return None
    if not _ETAG.fullmatch(value):
        raise InvalidArgument(FieldViolation(field, "is not an etag returned by this service"))
    return int(value)
