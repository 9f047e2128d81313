"""The route table refuses what it cannot serve, at start."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from gateway.routes import RouteError, compile_routes
from gateway.template import TemplateError, parse

_counter = itertools.count()


def _service(*bindings: tuple[str, str, str]) -> Any:
    """A one-off service whose methods have the given (name, verb, path) bindings."""
    n = next(_counter)
    file = descriptor_pb2.FileDescriptorProto(
        name=f"routes_test_{n}.proto", package=f"routestest{n}", syntax="proto3"
    )
    file.dependency.append("google/api/annotations.proto")
    request = file.message_type.add(name="Req")
    request.field.add(name="name", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    request.field.add(
        name="sub",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=f".routestest{n}.Req",
        label=1,
    )
    service = file.service.add(name="Svc")
    for name, verb, path in bindings:
        method = service.method.add(
            name=name, input_type=f".routestest{n}.Req", output_type=f".routestest{n}.Req"
        )
        setattr(method.options.Extensions[annotations_pb2.http], verb, path)
    descriptor_pool.Default().Add(file)
    return descriptor_pool.Default().FindServiceByName(f"routestest{n}.Svc")


def test_conflicting_bindings_refuse_to_start() -> None:
    with pytest.raises(RouteError, match="conflicting bindings"):
        compile_routes([_service(("A", "get", "/v1/{name=things/*}"), ("B", "get", "/v1/things/{name}"))])


def test_unknown_field_in_path_refuses_to_start() -> None:
    with pytest.raises(RouteError, match="no field 'nope'"):
        compile_routes([_service(("A", "get", "/v1/{nope=things/*}"))])
    with pytest.raises(RouteError, match="singular scalar"):
        compile_routes([_service(("A", "get", "/v1/{sub=things/*}"))])


def test_same_path_different_methods_is_fine() -> None:
    routes = compile_routes(
        [_service(("A", "get", "/v1/{name=things/*}"), ("B", "delete", "/v1/{name=things/*}"))]
    )
    assert {r.http_method for r in routes} == {"GET", "DELETE"}


@pytest.mark.parametrize("bad", ["v1/x", "/v1/{name", "/v1/{na-me}", "/v1/**/x", "/v1/{a={b}}", "/v1/x:"])
def test_bad_templates(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse(bad)


def test_field_violations_are_named_as_the_json_the_client_sent() -> None:
    from flowpilot.sessions.v1 import sessions_pb2
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    from gateway.errors import json_field_paths

    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description="x")
            for f in ("session.ticket_ref", "facts[3].text", "request_id", "request", "session.no_such")
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(bad)
    renamed = json_field_paths(
        status_pb2.Status(code=3, message="m", details=[packed]),
        sessions_pb2.CreateSessionRequest.DESCRIPTOR,
    )
    out = error_details_pb2.BadRequest()
    renamed.details[0].Unpack(out)
    assert [v.field for v in out.field_violations] == [
        "session.ticketRef",
        "facts[3].text",
        "requestId",
        "request",  # not a field: kept
        "session.no_such",
    ]
