"""Requests of many tiny elements: refused before they are decoded, and no
error names more than a bounded number of fields.

Decoded, 4 MiB of empty nested messages is over 120 MB of objects (and the
violations found in each element were millions): the runtime counts
repeated fields on the wire first (``services.core.validation
.element_violation``)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from flowpilot.walks.v1 import walks_pb2
from google.protobuf import field_mask_pb2, struct_pb2

from bench.stress import heaviest_requests, largest_flow
from services.core.auth import Role
from services.core.errors import MAX_FIELD_VIOLATIONS, FieldViolation, InvalidArgument
from services.core.validation import DEFAULT_MAX_ELEMENTS, MAX_WIRE_FIELDS, check_wire
from tests.support import Keys, expect_error

FLOW = walks_pb2.CreateFlowRequest.DESCRIPTOR


def element_violation(raw: bytes, message_type: Any) -> FieldViolation | None:
    """The violation ``check_wire`` refuses ``raw`` with, or None when it passes."""
    try:
        check_wire(raw, message_type)
    except InvalidArgument as refused:
        return refused.violations[0]
    return None


def refusal(raw: bytes, message_type: Any = FLOW) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_wire(raw, message_type)
    return caught.value


def test_the_largest_valid_flow_passes_the_count() -> None:
    assert element_violation(largest_flow().SerializeToString(), FLOW) is None


@pytest.mark.parametrize(
    ("service", "label", "field"),
    [
        ("walks", "4 MiB of empty nodes", "flow.tree.nodes"),
        ("sessions", "4 MiB of empty facts", "facts"),
        ("library", "4 MiB of empty tags", "script_template.tags"),
        ("settings", "4 MiB list value", "setting.value.list_value.values"),
    ],
)
def test_four_mib_of_empty_elements_is_refused_by_its_count(service: str, label: str, field: str) -> None:
    ((_, method, raw),) = [r for r in heaviest_requests()[service] if r[0] == label]
    from google.protobuf import descriptor_pool

    service_name, _, method_name = method.strip("/").rpartition("/")
    input_type = descriptor_pool.Default().FindMethodByName(f"{service_name}.{method_name}").input_type
    found = element_violation(raw, input_type)
    assert found is not None and found.field == field, found


def test_nested_elements_are_counted_per_parent() -> None:
    tree = largest_flow().flow.tree
    tree.nodes[3].options.add(label="one too many", next=tree.nodes[4].id)  # 21 options
    raw = walks_pb2.CreateFlowRequest(flow=walks_pb2.Flow(display_name="f", tree=tree)).SerializeToString()
    assert element_violation(raw, FLOW) == FieldViolation(
        "flow.tree.nodes[3].options", "must have at most 20 elements"
    )


def test_a_singular_message_sent_twice_merges_and_is_counted_as_one() -> None:
    """Protobuf merges repeated occurrences of a singular field: 300 nodes
    sent twice are 600 nodes once decoded."""
    half = walks_pb2.CreateFlowRequest(
        flow=walks_pb2.Flow(tree=walks_pb2.Tree(nodes=[walks_pb2.Node(id="n")] * 300))
    ).SerializeToString()
    merged = walks_pb2.CreateFlowRequest.FromString(half + half)
    assert len(merged.flow.tree.nodes) == 600
    found = element_violation(half + half, FLOW)
    assert found is not None and found.field == "flow.tree.nodes", found


def test_fields_without_a_declared_limit_have_the_default_one() -> None:
    at_limit = settings_pb2.UpdateSettingRequest(
        setting=settings_pb2.Setting(name="settings/x"),
        update_mask=field_mask_pb2.FieldMask(paths=["value"] * DEFAULT_MAX_ELEMENTS),
    )
    assert element_violation(at_limit.SerializeToString(), at_limit.DESCRIPTOR) is None
    at_limit.update_mask.paths.append("value")
    found = element_violation(at_limit.SerializeToString(), at_limit.DESCRIPTOR)
    assert found == FieldViolation("update_mask.paths", f"must have at most {DEFAULT_MAX_ELEMENTS} elements")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # a length past the end
        b"\x0f",  # wire type 7
        b"\x0a\x05ab",  # truncated
        b"\xff" * 11,  # a varint past 64 bits
        b"\xbb\x3e\xbc\x3e",  # an (empty) group: proto3 has none, the decoder would skip it
    ],
)
def test_bytes_that_are_no_message_are_refused_as_malformed(raw: bytes) -> None:
    assert refusal(raw).reason == "MALFORMED_REQUEST"


def test_an_unknown_group_does_not_switch_the_count_off() -> None:
    """A group up front once made the reader give up, and 4 MiB of empty
    nodes behind it reached the decoder (~120 MB)."""
    (_, _, nodes), *_ = [r for r in heaviest_requests()["walks"] if r[0] == "4 MiB of empty nodes"]
    assert refusal(b"\xbb\x3e\xbc\x3e" + nodes).reason == "MALFORMED_REQUEST"


def test_what_is_read_is_bounded_however_the_fields_are_spent() -> None:
    """Unknown fields, repeated scalars and nested lists under the default
    limit all count against one budget: reading stops there."""
    unknown = b"\x78\x00" * (MAX_WIRE_FIELDS + 1)  # field 15, unknown, as a varint
    assert refusal(unknown).reason == "REQUEST_TOO_COMPLEX"
    inner = struct_pb2.ListValue(values=[struct_pb2.Value()] * 9_000)
    nested = settings_pb2.UpdateSettingRequest(
        setting=settings_pb2.Setting(
            name="settings/notes.format",
            value=struct_pb2.Value(
                list_value=struct_pb2.ListValue(values=[struct_pb2.Value(list_value=inner)] * 10)
            ),
        )
    )
    assert refusal(nested.SerializeToString(), nested.DESCRIPTOR).reason == "REQUEST_TOO_COMPLEX"


def test_an_error_names_at_most_a_bounded_number_of_fields() -> None:
    error = InvalidArgument([FieldViolation(f"facts[{i}].text", "is required") for i in range(5000)])
    assert len(error.violations) == MAX_FIELD_VIOLATIONS
    assert str(error).endswith("; and 4990 more")


async def test_a_request_of_tiny_elements_is_refused_naming_the_field(
    settings_channel: grpc.aio.Channel, keys: Keys
) -> None:
    stub = settings_pb2_grpc.SettingsServiceStub(settings_channel)
    values = [struct_pb2.Value()] * 300_000  # 600 KB on the wire
    request = settings_pb2.UpdateSettingRequest(
        setting=settings_pb2.Setting(
            name="settings/notes.format",
            value=struct_pb2.Value(list_value=struct_pb2.ListValue(values=values)),
        )
    )
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)
    await expect_error(
        stub.UpdateSetting(request, metadata=md, timeout=20),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="setting.value.list_value.values",
    )


async def test_every_element_breaking_a_rule_gives_a_bounded_error(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    """400 facts (the limit), each without its required text: one error
    naming the first hundred, not four hundred violations."""
    stub = sessions_pb2_grpc.SessionsServiceStub(sessions_channel)
    request = sessions_pb2.CreateSessionRequest(
        session=sessions_pb2.Session(title="t", ticket_ref="T-1"), facts=[sessions_pb2.Fact()] * 400
    )
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.ENGINEER)
    error = await expect_error(
        stub.CreateSession(request, metadata=md, timeout=20), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert len(error.violations) == MAX_FIELD_VIOLATIONS, error
