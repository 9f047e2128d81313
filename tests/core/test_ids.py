"""The one UUID parser and the one etag parser of the suite."""

from __future__ import annotations

import uuid

import pytest

from services.core.errors import InvalidArgument
from services.core.ids import canonical_uuid, parse_etag, parse_uuid

ID = uuid.UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0")


def test_only_the_canonical_form_is_a_uuid() -> None:
    assert parse_uuid(str(ID), field="name") == ID
    aliases = [
        "{" + str(ID) + "}",
        "urn:uuid:" + str(ID),
        ID.hex,
        str(ID).upper(),
        str(ID).replace("0", "\uff10"),  # fullwidth digits
        " " + str(ID),
        str(ID) + "\n",
        "",
    ]
    for alias in aliases:
        assert canonical_uuid(alias) is None, alias
        with pytest.raises(InvalidArgument) as caught:
            parse_uuid(alias, field="parent", what="session id")
        assert caught.value.violations[0].field == "parent"
    assert canonical_uuid(None) is None
    assert canonical_uuid(ID) is None  # only text is parsed


def test_etags_are_decimal_revisions_that_fit_a_bigint() -> None:
    assert parse_etag("", field="etag") is None
    assert parse_etag("0", field="etag") == 0
    assert parse_etag("42", field="etag") == 42
    assert parse_etag("9" * 18, field="etag") == int("9" * 18)
    for bad in ["²", "\uff11", "-1", "+1", "1.0", "01", " 1", "1 ", "9" * 19, "9" * 20, "abc", '"1"']:
        with pytest.raises(InvalidArgument) as caught:
            parse_etag(bad, field="session.etag")
        assert caught.value.violations[0].field == "session.etag", bad
