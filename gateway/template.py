"""HttpRule path templates: parsing and matching, per ``google/api/http.proto``.

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

Percent-decoding follows the spec: a variable of one segment is fully
decoded (``%2F`` becomes ``/``); a variable spanning several segments keeps
``%2F`` (and only it) encoded, so that the segments stay recoverable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL = re.compile(r"^[A-Za-z0-9\-._~%!$&'()+,;=@]+$")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    """One template segment: a literal, ``*`` or ``**``, maybe inside a variable."""

    kind: str  # "literal" | "*" | "**"
    text: str = ""
    variable: str | None = None  # the field path it belongs to


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[Part, ...]
    verb: str | None
    variables: tuple[str, ...]
    # The template as one regular expression over the raw (still encoded) path:
    # what any matching path must look like, and, for a path without ``%``,
    # the variables' values as its groups (see ``_pattern``).
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _pattern(self))

    def shape(self) -> tuple[tuple[str, str], ...]:
        """What two templates must share to be ambiguous (variables named away)."""
        return (*tuple((p.kind, p.text) for p in self.parts), ("verb", self.verb or ""))

    def match(self, path: str) -> dict[str, str] | None:
        """Field path → value for a request path, or None when it does not match."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        if "%" in path:  # percent-decoding decides: the segment by segment reading below
            return self.match_decoding(path)
        return {variable: value or "" for variable, value in zip(self.variables, found.groups(), strict=True)}

    def _without_verb(self, path: str) -> str | None:
        """The path after its '/' and without the template's verb; None when
        it lacks the verb (or has another)."""
        if not path.startswith("/"):
            return None
        raw = path[1:]
        if self.verb is None:
            return raw
        last_slash, colon = raw.rfind("/"), raw.rfind(":")
        if colon <= last_slash or unquote(raw[colon + 1 :]) != self.verb:
            return None
        return raw[:colon]

    def _capture(self, segments: list[str]) -> tuple[dict[str, list[str]], set[str]] | None:
        """Each variable's segments (and which may span several), or None
        when the segments do not fit the template."""
        captured: dict[str, list[str]] = {}
        multi: set[str] = set()
        i = 0
        for index, part in enumerate(self.parts):
            if part.kind == "**":
                take = len(segments) - i - (len(self.parts) - index - 1)
                if take < 0:
                    return None
                if part.variable:
                    captured.setdefault(part.variable, []).extend(segments[i : i + take])
                    multi.add(part.variable)
                i += take
                continue
            if i >= len(segments):
                return None
            segment = segments[i]
            i += 1
            if part.kind == "literal" and unquote(segment) != part.text:
                return None
            if part.kind != "literal" and segment == "":
                return None
            if part.variable:
                captured.setdefault(part.variable, []).append(segment)
        return (captured, multi) if i == len(segments) else None

    def match_decoding(self, path: str) -> dict[str, str] | None:
        """``match``, segment by segment, decoding each as the spec says."""
        raw = self._without_verb(path)
        if raw is None:
            return None
        found = self._capture(raw.split("/"))
        if found is None:
            return None
        captured, multi = found
        values: dict[str, str] = {}
        for variable, pieces in captured.items():
            if len(pieces) == 1 and variable not in multi and not _spans(self, variable):
                values[variable] = unquote(pieces[0])
            else:
                values[variable] = "/".join(_decode_keep_slash(p) for p in pieces)
        return values


def _pattern(template: Template) -> re.Pattern[str]:
    """A regular expression that every path the template matches matches.

    A literal segment is itself or anything percent-encoded (which decoding
    may turn into it), ``*`` one non-empty segment, a trailing ``**`` any
    number of further segments; the verb follows the last ``:``. Each
    variable is one group around its segments: without ``%`` in the path
    (nothing to decode) a group is the variable's value as ``match_decoding``
    reads it (an absent group: ``""``).
    """
    regex = ""
    parts = list(template.parts)
    while parts:
        run = [parts.pop(0)]
        while run[0].variable is not None and parts and parts[0].variable == run[0].variable:
            run.append(parts.pop(0))
        fixed = [p for p in run if p.kind != "**"]
        body = "/".join(
            f"(?:{re.escape(p.text)}|[^/]*%[^/]*)" if p.kind == "literal" else "[^/]+" for p in fixed
        )
        if len(fixed) < len(run):  # a trailing ``**``: zero or more segments after the others
            if fixed:
                body += "(?:/.*)?"
            elif regex:
                # Only ``**`` and something before it: the slash belongs to the rest.
                regex += "(?:/(.*))?" if run[0].variable is not None else "(?:/.*)?"
                continue
            else:
                body = ".*"
        regex += "/" + (f"({body})" if run[0].variable is not None else body)
    if template.verb is not None:
        regex += f":(?:{re.escape(template.verb)}|[^/:]*%[^/:]*)"
    return re.compile(regex, re.DOTALL)


def _spans(template: Template, variable: str) -> bool:
    return sum(1 for p in template.parts if p.variable == variable) > 1


def _decode_keep_slash(segment: str) -> str:
    return "%2F".join(unquote(piece) for piece in re.split("%2[fF]", segment))


def parse(source: str) -> Template:
    if not source.startswith("/"):
        raise TemplateError(f"{source!r}: must start with '/'")
    body, verb = _split_verb(source[1:], source)
    parts: list[Part] = []
    variables: list[str] = []
    for token in _split_top(body, source):
        if token.startswith("{"):
            parts += _variable_parts(token, source, variables)
        else:
            parts.append(_segment(token, source, variable=None))
    for index, part in enumerate(parts):
        if part.kind == "**" and index != len(parts) - 1:
            raise TemplateError(f"{source!r}: '**' must be the last segment")
    return Template(source, tuple(parts), verb, tuple(variables))


def _split_verb(body: str, source: str) -> tuple[str, str | None]:
    """(the path, its verb): the verb is a ':' outside braces after the last '/'."""
    depth, colon = 0, -1
    for index, char in enumerate(body):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ":" and depth == 0 and "/" not in body[index:]:
            colon = index
    if colon < 0:
        return body, None
    verb = body[colon + 1 :]
    if not _LITERAL.match(verb):
        raise TemplateError(f"{source!r}: bad verb {verb!r}")
    return body[:colon], verb


def _variable_parts(token: str, source: str, variables: list[str]) -> list[Part]:
    """The segments of a ``{field=sub/path}`` variable (``{field}`` is ``*``); records the field."""
    if not token.endswith("}"):
        raise TemplateError(f"{source!r}: unclosed variable")
    field, _, sub = token[1:-1].partition("=")
    if not _IDENT.match(field):
        raise TemplateError(f"{source!r}: bad field path {field!r}")
    if field in variables:
        raise TemplateError(f"{source!r}: {field} bound twice")
    variables.append(field)
    return [_segment(piece, source, variable=field) for piece in (sub or "*").split("/")]


def _segment(token: str, source: str, *, variable: str | None) -> Part:
    if token in ("*", "**"):
        return Part(token, variable=variable)
    if not token or not _LITERAL.match(token) or "{" in token:
        raise TemplateError(f"{source!r}: bad segment {token!r}")
    return Part("literal", token, variable)


def _split_top(body: str, source: str) -> list[str]:
    tokens, depth, current = [], 0, ""
    for char in body:
        if char == "{":
            depth += 1
            if depth > 1:
                raise TemplateError(f"{source!r}: nested variables")
        elif char == "}":
            depth -= 1
        if char == "/" and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    tokens.append(current)
    if depth != 0:
        raise TemplateError(f"{source!r}: unbalanced braces")
    return tokens
