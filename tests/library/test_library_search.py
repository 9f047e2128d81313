"""Template search: the query syntax, its limits, and that no query text can fail it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from flowpilot.library.v1 import library_pb2 as pb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.core import search
from tests.library.helpers import Librarian
from tests.support import Keys, failure
from tests.support import expect_error as _fails


@pytest.fixture(scope="module")
async def shelf(library_address: str, keys: Keys) -> AsyncIterator[Librarian]:
    """One account with three templates, shared by the tests of this module (read only)."""
    async with grpc.aio.insecure_channel(library_address) as channel:
        lib = Librarian(channel, keys, account=uuid.uuid4())
        await lib.template("Clear print queue", body="Stop-Service spooler; Remove-Item queue")
        await lib.template("Reset network adapter", body="# also helps a stuck spooler sometimes")
        await lib.template("Spooler restart", body="Restart-Service spooler", parameters=[])
        yield lib


async def _names(lib: Librarian, query: str) -> list[str]:
    listed = await lib.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query=query))
    return [t.display_name for t in listed.script_templates]


async def test_words_phrases_and_exclusions(shelf: Librarian) -> None:
    # Name matches first, then description, then body (unchanged by the parsing).
    assert (await _names(shelf, "spooler"))[0] == "Spooler restart"
    assert set(await _names(shelf, "spooler -network")) == {"Spooler restart", "Clear print queue"}
    assert await _names(shelf, '"print queue"') == ["Clear print queue"]
    assert await _names(shelf, '-"print queue" spooler restart') == ["Spooler restart"]
    assert await _names(shelf, "Restart-Service") == ["Spooler restart"]  # a hyphenated word
    # Nothing else is syntax: operators are punctuation between words.
    assert await _names(shelf, "spooler | (network & !adapter) <-> :*") == ["Reset network adapter"]
    # Terms without a letter or digit are dropped; nothing left matches nothing.
    assert await _names(shelf, "- | & ! ( ) <->") == []
    assert await _names(shelf, "the") == []  # a stop word alone


@pytest.mark.parametrize(
    "query",
    ["-" * 33, "-" * 200, "(-" * 100, "-a " * 16, "!" * 200, "(" * 200, '"' * 200, "<->" * 66, "-x" * 100],
)
async def test_operator_floods_answer_ok(shelf: Librarian, query: str) -> None:
    """Each of these made websearch_to_tsquery fail ("tsquery stack too small") or is of the kind."""
    await shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query=query))


async def test_limits(shelf: Librarian) -> None:
    words = " ".join(f"w{i}" for i in range(search.MAX_TERMS))
    assert await _names(shelf, words) == []
    await _fails(
        shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query=words + " spooler")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query",
    )
    phrases = " ".join(f'"w{i} x"' for i in range(search.MAX_TERMS + 1))
    await _fails(
        shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query=phrases)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query",
    )
    # Operator-only pieces are not terms, so they do not count.
    assert await _names(shelf, "spooler" + " |" * 96) != []
    assert await _names(shelf, "spooler " + "x" * 192) == []  # 200 characters
    await _fails(
        shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query="spooler " + "x" * 193)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query",
    )
    await _fails(
        shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query="spooler\x00")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query",
    )


def test_parse() -> None:
    assert search.parse("  ") is None
    parsed = search.parse('-"print  queue" spooler -- (-x "open')
    assert parsed is not None
    assert parsed.terms == (
        search.Term("print  queue", exclude=True),
        search.Term("spooler", exclude=False),
        search.Term("(-x", exclude=False),
        search.Term("open", exclude=False),
    )


# Pieces of tsquery and web-search syntax, words, stop words and unicode.
PIECES = [
    "-", "(", ")", '"', "|", "&", "!", ":", "*", "<->", "<2>", ":*", "!!", "'", "\\", " ", "  ",
    "or", "OR", "and", "not", "the", "a", "spooler", "print", "x", "_", "é", "ß", "日本語", "\u0301",
    "\u200b", "\t", "\n", "\x00", "🙂", "١٢٣", "Ⅻ", "ﬁ",
]  # fmt: skip
QUERIES = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=220),
    st.lists(st.sampled_from(PIECES), max_size=120).map("".join),
    st.lists(st.sampled_from(["-", "(", "(-", "-(", "!", '"', " "]), min_size=30, max_size=200).map("".join),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=QUERIES)
@example(query="-" * 33)
@example(query="(-" * 40)
@example(query="-a " * 30)
async def test_no_query_text_fails_the_search(shelf: Librarian, query: str) -> None:
    """Whatever the text: an answer, or INVALID_ARGUMENT on `query`; never INTERNAL or UNKNOWN."""
    try:
        await shelf.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query=query))
    except grpc.aio.AioRpcError as exc:
        error = failure(exc)
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT, (query, error)
        assert set(error.violations) == {"query"}, (query, error)
