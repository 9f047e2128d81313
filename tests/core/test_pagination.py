"""Page tokens: authenticated, bound to the query and tenant, rotatable."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from services.core import pagination
from services.core.errors import InvalidArgument

OLD, NEW = "o" * 32, "n" * 40
ID = str(uuid.uuid4())


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    saved = list(pagination._secrets)
    pagination.use_secrets([NEW, OLD])
    yield
    pagination._secrets[:] = saved


def _refused(token: str, fingerprint: str = "q") -> None:
    with pytest.raises(InvalidArgument) as caught:
        pagination.keyset_after(token, query_fingerprint=fingerprint, first=datetime.fromisoformat)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    assert caught.value.violations[0].field == "page_token"


def test_a_token_round_trips_for_its_own_query_only() -> None:
    token = pagination.encode_token(["2026-01-01T00:00:00+00:00", ID], query_fingerprint="q")
    key, row = pagination.keyset_after(token, query_fingerprint="q", first=datetime.fromisoformat) or (0, 0)
    assert key == datetime.fromisoformat("2026-01-01T00:00:00+00:00") and str(row) == ID
    _refused(token, fingerprint="another query or account")


def test_forged_altered_and_malformed_tokens_are_refused() -> None:
    good = pagination.encode_token(["2026-01-01T00:00:00+00:00", ID], query_fingerprint="q")
    payload, mac = good.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps(["9999-12-31T23:59:59-14:00", ID]).encode()).decode()
    # The previous, unsigned format: base64 JSON with the (computable) fingerprint.
    unsigned = base64.urlsafe_b64encode(json.dumps({"p": ["not-a-time", ID], "f": "q"}).encode()).decode()
    for token in [
        f"{forged_payload.rstrip('=')}.{mac}",
        f"{payload}.{mac[:-2]}AA",
        f"{payload}.",
        payload,
        unsigned,
        "abc",
        "a.b.c",
        "é.é",
        "\x00",
        "%%%.%%%",
        "A" * 5000,
    ]:
        _refused(token)


def test_a_token_signed_with_the_previous_secret_is_still_accepted() -> None:
    pagination.use_secrets([OLD])
    earlier = pagination.encode_token(["2026-01-01T00:00:00+00:00", ID], query_fingerprint="q")
    pagination.use_secrets([NEW, OLD])  # rotation: NEW signs, OLD still verifies
    assert pagination.keyset_after(earlier, query_fingerprint="q", first=datetime.fromisoformat)
    assert pagination.encode_token(["x", ID], query_fingerprint="q") != pagination.encode_token(
        ["x", ID], query_fingerprint="r"
    )
    pagination.use_secrets([NEW])  # retired
    _refused(earlier)


def test_positions_our_own_code_cannot_read_are_refused_not_crashing() -> None:
    # Signed (so only a version skew could produce them), yet unreadable.
    for position in [["not-a-time", ID], ["2026-01-01T00:00:00", "not-a-uuid"], [{}, ID], [1e30, ID], ["x"]]:
        _refused(pagination.encode_token(position, query_fingerprint="q"))  # type: ignore[arg-type]


def test_another_spelling_of_the_same_bytes_is_refused() -> None:
    token = pagination.encode_token(["2026-01-01T00:00:00+00:00", ID], query_fingerprint="q")
    payload, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # A 16-byte MAC is 22 characters; the last one's low 4 bits carry nothing.
    respelled = mac[:-1] + alphabet[alphabet.index(mac[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelled + "==") == base64.urlsafe_b64decode(mac + "==")
    _refused(f"{payload}.{respelled}")
    _refused(f"{payload}.{mac}==")
