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


def test_a_list_call_pages_through_its_rows_and_stops_after_the_last() -> None:
    """The List helper every service uses: page size, token bound to the
    query and the account, one row more read than shown."""
    from dataclasses import dataclass

    @dataclass
    class Request:
        page_size: int = 2
        page_token: str = ""

    @dataclass
    class Row:
        id: uuid.UUID
        name: str

    rows = sorted((Row(uuid.uuid4(), f"n{i}") for i in range(5)), key=lambda r: (r.name, r.id))
    account = uuid.uuid4()
    seen: list[str] = []
    tokens: list[str] = []
    request = Request()
    while True:
        paging = pagination.paging(request, account, {"filter": "x"}, first=str)
        after = paging.after
        remaining = [r for r in rows if after is None or (r.name, r.id) > after]
        shown, token = paging.page(remaining[: paging.fetch], key=lambda r: r.name)
        seen += [r.name for r in shown]
        if not token:
            break
        tokens.append(token)
        request = Request(page_token=token)
    assert seen == [r.name for r in rows] and len(tokens) == 2
    for other_account, other_query in ((uuid.uuid4(), {"filter": "x"}), (account, {"filter": "y"})):
        with pytest.raises(InvalidArgument):
            pagination.paging(Request(page_token=tokens[0]), other_account, other_query, first=str)
    bounded = pagination.paging(Request(page_size=5000), account, {}, first=str, max_page_size=10)
    assert bounded.limit == 10 and bounded.fetch == 11
