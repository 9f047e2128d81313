"""OpenAPI 3.1 for the gateway, generated at start from the same route table
and the proto3 JSON mapping the gateway speaks (64-bit integers as strings,
enums by name, Timestamp as date-time, lowerCamelCase field names)."""

from __future__ import annotations

from typing import Any

from flowpilot.api.v1 import access_pb2
from google.api import field_behavior_pb2
from google.protobuf import descriptor

from gateway.routes import Route
from services.core.validation import behaviors, max_size

FD = descriptor.FieldDescriptor
_INT32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_UINT32, FD.TYPE_FIXED32}
_INT64 = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64}
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
}
INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
STATUS_SCHEMA = {
    "type": "object",
    "description": "google.rpc.Status: the gRPC code, a message, and typed details "
    "(google.rpc.ErrorInfo with reason and domain; google.rpc.BadRequest with field violations).",
    "properties": {
        "code": {"type": "integer", "description": "google.rpc.Code"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {"type": "object", "properties": {"@type": {"type": "string"}}},
        },
    },
    "required": ["code", "message", "details"],
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"google.rpc.Status": STATUS_SCHEMA}

    def field(self, field: FD) -> dict[str, Any]:
        schema = self._single(field)
        if field.is_repeated and not (field.message_type and field.message_type.GetOptions().map_entry):
            schema = {"type": "array", "items": schema}
            if max_size(field):
                schema["maxItems"] = max_size(field)
        fb = behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in fb:
            schema = {**schema, "readOnly": True}
        return schema

    def _single(self, field: FD) -> dict[str, Any]:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value = field.message_type.fields_by_name["value"]
                return {"type": "object", "additionalProperties": self._single(value)}
            return self.message(field.message_type)
        if field.type == FD.TYPE_STRING:
            schema: dict[str, Any] = {"type": "string"}
            if max_size(field):
                schema["maxLength"] = max_size(field)
            return schema
        if field.type == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if field.type in _INT32:
            return {"type": "integer", "format": "int32"}
        if field.type in _INT64:
            return dict(INT64)
        if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return {"type": "number"}
        if field.type == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == FD.TYPE_ENUM and field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return {}

    def message(self, message: descriptor.Descriptor) -> dict[str, Any]:
        if message.full_name in _WKT:
            return dict(_WKT[message.full_name])
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # placeholder against recursion
            self.components[message.full_name] = {
                "type": "object",
                "properties": {f.json_name: self.field(f) for f in message.fields},
            }
        return {"$ref": f"#/components/schemas/{message.full_name}"}


def _path_and_params(route: Route) -> tuple[str, list[dict[str, Any]], set[str]]:
    """OpenAPI path (one parameter per wildcard segment) and its parameters."""
    out: list[str] = []
    params: list[dict[str, Any]] = []
    names: set[str] = set()
    previous = ""
    for part in route.template.parts:
        if part.kind == "literal":
            out.append(part.text)
            previous = part.text
            continue
        if part.variable and sum(1 for p in route.template.parts if p.variable == part.variable) == 1:
            name = part.variable
        else:
            base = (
                previous[:-2]
                if previous.endswith("xes")
                else previous[:-1]
                if previous.endswith("s")
                else previous
            )
            name = base or (part.variable or "segment")
        while name in names:
            name += "_"
        names.add(name)
        description = f"Part of `{part.variable}`." if part.variable and name != part.variable else ""
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[^/]+$"},
                "description": description,
            }
        )
        out.append("{" + name + "}")
    path = "/" + "/".join(out) + (f":{route.template.verb}" if route.template.verb else "")
    return path, params, set(route.template.variables)


def _query_params(route: Route, schemas: _Schemas, bound: set[str]) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    params: list[dict[str, Any]] = []

    def add(message: descriptor.Descriptor, prefix: str, depth: int) -> None:
        for field in message.fields:
            path = prefix + field.name
            if path in bound or path == route.body or field_behavior_pb2.OUTPUT_ONLY in behaviors(field):
                continue
            nested = field.message_type
            if nested is not None and nested.full_name not in _WKT and not nested.GetOptions().map_entry:
                if depth < 2 and not field.is_repeated:
                    add(nested, path + ".", depth + 1)
                continue
            if nested is not None and nested.full_name in (
                "google.protobuf.Struct",
                "google.protobuf.Value",
                "google.protobuf.ListValue",
                "google.protobuf.Any",
            ):
                continue
            params.append({"name": path, "in": "query", "required": False, "schema": schemas.field(field)})

    add(route.method.input_type, "", 0)
    return params


def document(routes: list[Route]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for route in routes:
        path, params, bound = _path_and_params(route)
        operation_id = f"{route.service.rsplit('.', 1)[-1]}_{route.method.name}"
        while operation_id in seen_ids:
            operation_id += "_alt"
        seen_ids.add(operation_id)
        role = route.method.GetOptions().Extensions[access_pb2.minimum_role]
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [route.service.rsplit(".", 1)[-1]],
            "summary": route.method.name,
            "description": f"gRPC `{route.method.full_name}`. Minimum role: `{access_pb2.Role.Name(role)}`.",
            "parameters": params + _query_params(route, schemas, bound),
            "responses": {
                "default": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}
                    },
                }
            },
        }
        if route.body:
            if route.body == "*":
                body_schema = schemas.message(route.method.input_type)
            else:
                body_schema = schemas.field(route.method.input_type.fields_by_name[route.body])
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        if route.empty_response:
            operation["responses"]["204"] = {"description": "Done"}
        else:
            if route.response_body:
                response_schema = schemas.field(route.method.output_type.fields_by_name[route.response_body])
            else:
                response_schema = schemas.message(route.method.output_type)
            content = {"application/json": {"schema": response_schema}}
            if route.may_create:
                operation["responses"]["201"] = {
                    "description": "Created",
                    "headers": {
                        "Location": {"description": "URL of the new resource", "schema": {"type": "string"}}
                    },
                    "content": content,
                }
                operation["responses"]["200"] = {
                    "description": "Nothing created: an existing resource resumed, or a request_id replayed",
                    "content": content,
                }
            else:
                operation["responses"]["200"] = {"description": "OK", "content": content}
        paths.setdefault(path, {})[route.http_method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FlowPilot API",
            "version": "v1",
            "description": "HTTP/JSON API of the FlowPilot services, derived from the protos' google.api.http "
            "annotations. JSON follows the proto3 mapping: lowerCamelCase names (snake_case accepted on input), "
            "64-bit integers as strings, enums by name, timestamps in RFC 3339. Errors are google.rpc.Status.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
