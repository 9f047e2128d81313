"""List paging (AIP-158): page sizes and opaque keyset page tokens.

A token holds the sort key of the last row returned and a fingerprint of the
query and tenant it belongs to; presenting it with another filter, or from
another account, is INVALID_ARGUMENT. Positions are keyset values (never an
offset), so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.core.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Position = list[str | int | float | bool | None]


def page_size(requested: int) -> int:
    """0 → default, above the maximum → the maximum, negative → error."""
    if requested < 0:
        raise InvalidArgument(FieldViolation("page_size", "must not be negative"))
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def fingerprint(account_id: uuid.UUID, query: Mapping[str, object]) -> str:
    canonical = json.dumps({"a": str(account_id), "q": query}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def encode_token(position: Position, *, query_fingerprint: str) -> str:
    raw = json.dumps({"p": position, "f": query_fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, *, query_fingerprint: str) -> Position | None:
    """The position to resume after, or None for the first page."""
    if not token:
        return None
    bad = InvalidArgument(FieldViolation("page_token", "is not a page token of this query"))
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("f") != query_fingerprint:
        raise bad
    position = data.get("p")
    if not isinstance(position, list):
        raise bad
    return position


def keyset_after(
    token: str, *, query_fingerprint: str, first: Callable[[str], Any]
) -> tuple[Any, uuid.UUID] | None:
    """A (sort key, id) position from a token, or None for the first page."""
    position = decode_token(token, query_fingerprint=query_fingerprint)
    if position is None:
        return None
    try:
        return first(str(position[0])), uuid.UUID(str(position[1]))
    except (IndexError, ValueError):
        raise InvalidArgument(FieldViolation("page_token", "is not a page token of this query")) from None


def next_page_token(
    rows: Sequence[Any], limit: int, *, query_fingerprint: str, key: Callable[[Any], Any]
) -> str:
    """The token after ``rows[limit - 1]`` when one more row than the page was fetched; else ""."""
    if len(rows) <= limit:
        return ""
    last = rows[limit - 1]
    return encode_token([key(last), str(last.id)], query_fingerprint=query_fingerprint)
