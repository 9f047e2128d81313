"""List paging (AIP-158): page sizes and opaque keyset page tokens.

A token holds the sort key of the last row returned, authenticated with an
HMAC-SHA256 under the deployment's page-token secret (the first of
``FLOWPILOT_PAGE_TOKEN_SECRETS`` signs, every one verifies, so a secret can be
rotated) over the position and a fingerprint of the query and tenant it
belongs to. A token presented with another filter, from another account,
altered, forged, or signed by a retired secret is INVALID_ARGUMENT with reason
``INVALID_PAGE_TOKEN``. Positions are keyset values (never an offset), so
pages stay stable while rows are added.

The secrets are process configuration, installed once by the server
bootstrap (:func:`use_secrets`), like the process's logging and tracing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from services.core.errors import FieldViolation, InvalidArgument
from services.core.ids import canonical_uuid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Longer tokens are refused before any decoding (ours are well under 1 KiB).
MAX_TOKEN_CHARS = 2048
_MAC_BYTES = 16

Position = list[str | int | float | bool | None]

_secrets: list[bytes] = []


def use_secrets(secrets: Sequence[str]) -> None:
    """Installs the page-token secrets of this process (the first signs)."""
    if not secrets:
        raise ValueError("at least one page-token secret is needed")
    _secrets[:] = [s.encode() for s in secrets]


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


def invalid_token() -> InvalidArgument:
    return InvalidArgument(
        FieldViolation("page_token", "is not a page token of this query"), reason="INVALID_PAGE_TOKEN"
    )


def _mac(secret: bytes, payload: bytes, query_fingerprint: str) -> bytes:
    signed = payload + b"|" + query_fingerprint.encode()
    return hmac.new(secret, signed, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_token(position: Position, *, query_fingerprint: str) -> str:
    if not _secrets:
        raise RuntimeError("page-token secrets are not configured (pagination.use_secrets)")
    payload = json.dumps(position, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(_secrets[0], payload, query_fingerprint))}"


def decode_token(token: str, *, query_fingerprint: str) -> Position | None:
    """The position to resume after, or None for the first page."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 1:
        raise invalid_token()
    payload_text, mac_text = token.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise invalid_token() from None
    if _b64(payload) != payload_text or _b64(mac) != mac_text:
        # Another spelling of the same bytes (base64's unused low bits, or
        # characters the decoder skips): only the token we wrote is ours.
        raise invalid_token()
    if not any(hmac.compare_digest(mac, _mac(s, payload, query_fingerprint)) for s in _secrets):
        raise invalid_token()
    try:
        position = json.loads(payload)
    except ValueError:
        raise invalid_token() from None
    if not isinstance(position, list) or not position:
        raise invalid_token()
    return position


def keyset_after(
    token: str, *, query_fingerprint: str, first: Callable[[str], Any]
) -> tuple[Any, uuid.UUID] | None:
    """A (sort key, id) position from a token, or None for the first page."""
    position = decode_token(token, query_fingerprint=query_fingerprint)
    if position is None:
        return None
    if len(position) != 2:
        raise invalid_token()
    row_id = canonical_uuid(position[1])
    try:
        key = first(str(position[0]))
    except (ValueError, TypeError, OverflowError):
        raise invalid_token() from None
    if row_id is None:
        raise invalid_token()
    return key, row_id


def next_page_token(
    rows: Sequence[Any], limit: int, *, query_fingerprint: str, key: Callable[[Any], Any]
) -> str:
    """The token after ``rows[limit - 1]`` when one more row than the page was fetched; else ""."""
    if len(rows) <= limit:
        return ""
    last = rows[limit - 1]
    return encode_token([key(last), str(last.id)], query_fingerprint=query_fingerprint)


class ListRequest(Protocol):
    """What every List request has (AIP-158)."""

    @property
    def page_size(self) -> int: ...

    @property
    def page_token(self) -> str: ...


K = TypeVar("K")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Paging(Generic[K]):
    """One List call's paging: the page size, where it resumes (the last
    row's sort key and id), and the query and tenant its tokens are bound to."""

    limit: int
    after: tuple[K, uuid.UUID] | None
    query: str

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page shows whether another follows."""
        return self.limit + 1

    def page(self, rows: Sequence[R], key: Callable[[R], object]) -> tuple[Sequence[R], str]:
        """The page's rows and the token of the next page ("" after the last);
        ``key`` is a row's sort key, as ``first`` reads it back."""
        return rows[: self.limit], self.token_after(rows, self.limit, key)

    def token_after(self, rows: Sequence[R], shown: int, key: Callable[[R], object]) -> str:
        """The token of the page after the first ``shown`` rows, for a page that
        ends early (a response budget); "" when no row follows them."""
        return next_page_token(rows, shown, query_fingerprint=self.query, key=key)


def paging(
    request: ListRequest,
    account_id: uuid.UUID,
    query: Mapping[str, object],
    *,
    first: Callable[[str], K],
    max_page_size: int = MAX_PAGE_SIZE,
) -> Paging[K]:
    """A List request's paging: its page size (bounded), and its token read
    back for this query (``query``: the filters) and account."""
    bound = fingerprint(account_id, query)
    return Paging(
        limit=min(page_size(request.page_size), max_page_size),
        after=keyset_after(request.page_token, query_fingerprint=bound, first=first),
        query=bound,
    )
