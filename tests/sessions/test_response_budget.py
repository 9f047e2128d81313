"""A list page ends early rather than pass the response budget."""

from __future__ import annotations

from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.sessions import convert


def test_a_page_ends_before_the_budget_and_always_holds_one() -> None:
    big = pb.NoteRevision(text="x" * (convert.RESPONSE_BUDGET_BYTES // 3 + 10))
    page = convert.within_budget([big] * 5, 1000)
    assert len(page) == 2  # a third would pass 3 MiB
    huge = pb.NoteRevision(text="x" * (convert.RESPONSE_BUDGET_BYTES + 1))
    assert len(convert.within_budget([huge, big], 1000)) == 1
    small = pb.NoteRevision(text="note")
    assert len(convert.within_budget([small] * 10, 4)) == 4
