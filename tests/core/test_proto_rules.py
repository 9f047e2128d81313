"""Rules every FlowPilot API follows, checked on the compiled descriptors, so
that each new service is held to them without a test of its own."""

from __future__ import annotations

import importlib
import pkgutil

import flowpilot
from flowpilot.api.v1 import access_pb2
from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import descriptor

from services.core.validation import behaviors, max_size


def _services() -> list[descriptor.ServiceDescriptor]:
    found = []
    for module in pkgutil.walk_packages(flowpilot.__path__, "flowpilot."):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(module.name).DESCRIPTOR
            found += list(file.services_by_name.values())
    return found


def _input_fields(
    message: descriptor.Descriptor, seen: set[str]
) -> list[tuple[str, descriptor.FieldDescriptor]]:
    """Fields a caller can set, following nested FlowPilot messages."""
    if message.full_name in seen:
        return []
    seen.add(message.full_name)
    fields = []
    for field in message.fields:
        if field_behavior_pb2.OUTPUT_ONLY in behaviors(field):
            continue
        fields.append((f"{message.full_name}.{field.name}", field))
        nested = field.message_type
        # Map entries are bounded by their map field; the service bounds their values.
        if (
            nested is not None
            and nested.full_name.startswith("flowpilot.")
            and not nested.GetOptions().map_entry
        ):
            fields += _input_fields(nested, seen)
    return fields


def test_there_are_services() -> None:
    assert {s.full_name for s in _services()} >= {
        "flowpilot.settings.v1.SettingsService",
        "flowpilot.sessions.v1.SessionsService",
        "flowpilot.library.v1.LibraryService",
        "flowpilot.walks.v1.WalksService",
    }


def test_every_rpc_has_a_role_and_public_ones_an_http_binding() -> None:
    internal = []
    for service in _services():
        for method in service.methods:
            options = method.GetOptions()
            role = options.Extensions[access_pb2.minimum_role]
            assert role != access_pb2.ROLE_UNSPECIFIED, method.full_name
            if role == access_pb2.ROLE_SERVICE:
                # Internal: named callers, and never reachable over HTTP.
                internal.append(method.full_name)
                assert list(options.Extensions[access_pb2.service_callers]), method.full_name
                assert not options.HasExtension(annotations_pb2.http), method.full_name
            else:
                assert options.HasExtension(annotations_pb2.http), method.full_name
    assert "flowpilot.library.v1.LibraryService.ImportSessionScripts" in internal


def test_every_text_and_list_a_caller_sends_is_bounded() -> None:
    unbounded = []
    for service in _services():
        for method in service.methods:
            for path, field in _input_fields(method.input_type, set()):
                is_text = field.type in (
                    descriptor.FieldDescriptor.TYPE_STRING,
                    descriptor.FieldDescriptor.TYPE_BYTES,
                )
                if (is_text or field.is_repeated) and not max_size(field):
                    unbounded.append(path)
    assert sorted(set(unbounded)) == []
