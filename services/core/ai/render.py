"""Renders a note (a title and sections of lines) as markdown, plain text or HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence

Section = tuple[str, Sequence[str]]  # heading, bullet lines (one line: a paragraph)

FORMATS = ("markdown", "plain", "html")


def render(title: str, sections: Sequence[Section], fmt: str) -> str:
    if fmt == "markdown":
        out = [f"## {title}", ""]
        for heading, lines in sections:
            out.append(f"**{heading}**")
            out.extend(lines if len(lines) == 1 else [f"- {line}" for line in lines])
            out.append("")
        return "\n".join(out).rstrip() + "\n"
    if fmt == "plain":
        out = [title, "=" * len(title), ""]
        for heading, lines in sections:
            out.append(f"{heading}:")
            out.extend(lines if len(lines) == 1 else [f"  * {line}" for line in lines])
            out.append("")
        return "\n".join(out).rstrip() + "\n"
    if fmt == "html":
        out = [f"<h2>{html.escape(title)}</h2>"]
        for heading, lines in sections:
            out.append(f"<h3>{html.escape(heading)}</h3>")
            if len(lines) == 1:
                out.append(f"<p>{html.escape(lines[0])}</p>")
            else:
                out.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
