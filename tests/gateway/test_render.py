"""Responses render as json_format does, with large sub-messages remembered."""

from __future__ import annotations

from flowpilot.walks.v1 import walks_pb2
from google.protobuf import json_format

from gateway import transcode


def walk(nodes: int, *, text: str = "Is the printer online?") -> walks_pb2.Walk:
    tree = walks_pb2.Tree(root="n0")
    for i in range(nodes):
        tree.nodes.add(
            id=f"n{i}",
            kind=walks_pb2.NODE_KIND_QUESTION,
            text=f"{text} ({i})",
            options=[
                walks_pb2.Option(label="Yes", next=f"n{i + 1}"),
                walks_pb2.Option(label="No", next="end"),
            ],
        )
    message = walks_pb2.Walk(name="walks/w1", ticket_ref="T-1", current_node="n3", tree=tree)
    message.path.add(node="n0", choice="Yes")
    message.start_time.FromSeconds(1_700_000_000)
    return message


def expected(message: walks_pb2.Walk) -> dict[str, object]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def test_a_large_tree_renders_as_json_format_does_and_is_remembered() -> None:
    first = walk(60)
    assert first.tree.ByteSize() > transcode._LARGE_BYTES
    rendered = transcode.to_json_object(first)
    assert rendered == expected(first)
    # The next step of the walk: same tree, other fields changed.
    second = walk(60)
    second.current_node = "n4"
    again = transcode.to_json_object(second)
    assert again == expected(second)
    assert again["tree"] is rendered["tree"]  # rendered once
    # Another tree is rendered afresh, never confused with the first.
    other = walk(60, text="Does the spooler run?")
    assert transcode.to_json_object(other) == expected(other)


def test_small_messages_are_not_remembered() -> None:
    small = walk(2)
    before = len(transcode._rendered)
    assert transcode.to_json_object(small) == expected(small)
    assert len(transcode._rendered) == before


def test_what_is_remembered_stays_within_its_bound() -> None:
    for i in range(600):
        transcode.to_json_object(walk(60, text=f"Question {i}"))
    assert 0 < transcode._rendered_bytes <= transcode._REMEMBERED_BYTES
    assert transcode._rendered_bytes == sum(len(data) for _, data in transcode._rendered)
