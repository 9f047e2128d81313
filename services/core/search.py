"""What a search ``query`` means (templates, flows): a few plain terms, never tsquery syntax.

A query is at most 200 characters (the proto's ``max_size``, checked by the
runtime) and at most :data:`MAX_TERMS` terms. A term is a run of non-blank
characters or a ``"quoted phrase"``; a leading ``-`` excludes it. That is the
whole syntax: no ``OR``, no parentheses, no tsquery operators. Each term's text
goes to PostgreSQL as a bound value of ``phraseto_tsquery``, which reads it as
plain text (punctuation separates words, operators mean nothing), and the terms
are joined in SQL. The text therefore never reaches the tsquery operator
parser, whose fixed stack fails on input such as 33 ``-`` ("tsquery stack too
small"), so no query text can make the search fail.

A term with no letter or digit (``-``, ``|``, ``(``) is dropped; a query that
is left with no term matches nothing, as one made only of stop words does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op

from services.core.errors import FieldViolation, InvalidArgument

MAX_TERMS = 16

# An optional "-", then a quoted phrase (an unclosed quote runs to the end) or
# a run of characters that are neither blank nor a quote.
_TERM = re.compile(r'(-?)(?:"([^"]*)"?|([^\s"]+))')
_WORD = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    exclude: bool


@dataclass(frozen=True, slots=True)
class Search:
    """A parsed query; no ``terms`` means it can match nothing."""

    terms: tuple[Term, ...]


def parse(query: str, *, field: str = "query") -> Search | None:
    """The search ``query`` asks for; None when it is blank (no search)."""
    if not query.strip():
        return None
    if "\x00" in query:  # PostgreSQL text cannot hold it
        raise InvalidArgument(FieldViolation(field, "must not contain NUL characters"))
    terms = []
    for match in _TERM.finditer(query):
        minus, phrase, word = match.groups()
        text = phrase if phrase is not None else word
        if not _WORD.search(text):  # operator syntax or punctuation alone
            continue
        terms.append(Term(text=text, exclude=minus == "-"))
    if len(terms) > MAX_TERMS:
        raise InvalidArgument(
            FieldViolation(field, f"must have at most {MAX_TERMS} terms (words or quoted phrases)")
        )
    return Search(terms=tuple(terms))


_ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")
_NOT: custom_op[Any] = custom_op("!!")


def tsquery(search: Search) -> ColumnElement[Any] | None:
    """The terms joined with ``&&`` (an excluded one under ``!!``). Each term
    is bound as plain text for ``phraseto_tsquery``, so none of it is parsed
    as tsquery syntax. None when there is no term."""
    parts: list[ColumnElement[Any]] = []
    for term in search.terms:
        part: ColumnElement[Any] = func.phraseto_tsquery(_ENGLISH, term.text, type_=TSQUERY)
        if term.exclude:
            part = UnaryExpression(part, operator=_NOT, type_=TSQUERY).self_group()
        parts.append(part)
    if not parts:
        return None
    return functools.reduce(lambda a, b: a.op("&&", return_type=TSQUERY)(b), parts)
