"""What the gateway accepts in request headers before anything reaches a
backend: the request id, and the headers it forwards as gRPC metadata.

gRPC metadata carries printable ASCII only, and a backend refuses metadata
over its size limit: a header the metadata cannot carry is refused here, at
once, naming the header (400, or 431 when it is too large), instead of
failing inside the gRPC call.

- ``X-Request-Id``: 1-128 characters of ``A-Z a-z 0-9 . _ : -``; longer is
  431, anything else 400 (never echoed). Without one the gateway makes a UUID.
- ``Authorization``: at most 4096 bytes of printable ASCII.
- Every other forwarded header (``FLOWPILOT_FORWARD_HEADERS``): at most 1024
  bytes of printable ASCII.
- All request headers together: at most 32 KiB (431).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

import grpc

from gateway.errors import HttpError

REQUEST_ID_MAX = 128
AUTHORIZATION_MAX = 4096
FORWARDED_MAX = 1024
ALL_HEADERS_MAX = 32 * 1024

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % REQUEST_ID_MAX)
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _display(name: bytes) -> str:
    return "-".join(part.capitalize() for part in name.decode("latin-1").split("-"))


def _bad(name: bytes, problem: str) -> HttpError:
    header = _display(name)
    return HttpError(
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"header {header} {problem}",
        reason="INVALID_HEADER",
        violations=[(header, problem)],
    )


def _too_large(name: str, limit: int) -> HttpError:
    problem = f"is larger than {limit} bytes"
    return HttpError(
        431,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"header {name} {problem}",
        reason="HEADER_TOO_LARGE",
        violations=[(name, problem)],
    )


def check_total(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    if sum(len(k) + len(v) + 4 for k, v in raw_headers) > ALL_HEADERS_MAX:
        raise _too_large("(all headers)", ALL_HEADERS_MAX)


def request_id(raw: bytes | None) -> str:
    """The caller's request id when valid, a new UUID when none was sent."""
    if raw is None:
        return str(uuid.uuid4())
    if not _REQUEST_ID.fullmatch(raw):
        if len(raw) > REQUEST_ID_MAX:
            raise _too_large("X-Request-Id", REQUEST_ID_MAX)
        raise _bad(b"x-request-id", f"must be 1-{REQUEST_ID_MAX} characters of A-Z a-z 0-9 . _ : -")
    return raw.decode("ascii")


def metadata_value(name: bytes, raw: bytes) -> str:
    """``raw`` as a gRPC metadata value (printable ASCII within its size limit)."""
    limit = AUTHORIZATION_MAX if name == b"authorization" else FORWARDED_MAX
    if len(raw) > limit:
        raise _too_large(_display(name), limit)
    if not _PRINTABLE.fullmatch(raw):
        raise _bad(name, "must be printable ASCII (no control characters, tabs or non-ASCII bytes)")
    return raw.decode("ascii")


def forwarded(raw_headers: Sequence[tuple[bytes, bytes]], names: frozenset[bytes]) -> list[tuple[str, str]]:
    """The forwarded headers as metadata pairs, each checked."""
    return [(k.decode("ascii"), metadata_value(k, v)) for k, v in raw_headers if k in names]
