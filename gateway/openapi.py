"""OpenAPI 3.1 for the gateway, generated at start from the same route table
and the proto3 JSON mapping the gateway speaks (64-bit integers as strings,
enums by name, Timestamp as date-time, lowerCamelCase field names).

Each message has up to three component schemas, because the JSON differs by
direction:

- ``pkg.Message`` (responses): every field the gateway always prints is
  ``required`` (fields without presence: scalars, enums, repeated fields and
  maps); OUTPUT_ONLY fields are also ``readOnly``.
- ``pkg.Message-Input`` (request bodies): ``required`` lists the fields the
  proto marks REQUIRED (``google.api.field_behavior``).
- ``pkg.Message-Patch`` (``PATCH`` bodies): nothing required; AIP-134, the
  fields present (or ``updateMask``) say what changes.

Descriptions come from the proto comments (``flowpilot._comments``, written
by tools/genproto.py) when the generated package has them.
"""

from __future__ import annotations

import importlib
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
    # The suite's only Value fields are settings': the catalogue types them as
    # a string (enum settings), a boolean or a whole number (ListSettings names
    # each key's type and allowed values).
    "google.protobuf.Value": {
        "oneOf": [{"type": "string"}, {"type": "boolean"}, {"type": "integer"}],
        "description": "A setting's value: a string (enum settings), a boolean or a whole number, "
        "as the key's catalogue entry says.",
    },
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
}
INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
STATUS = "google.rpc.Status"
TYPE_PREFIX = "type.googleapis.com/"
# The detail types the suite sends in a google.rpc.Status, as the gateway
# prints them (json_format without defaults: only "@type" is always there).
DETAIL_SCHEMAS: dict[str, dict[str, Any]] = {
    "google.rpc.ErrorInfo": {
        "description": "Why the request failed: a machine-readable reason (UPPER_SNAKE_CASE) "
        "in a domain (the service or the gateway), with optional metadata.",
        "properties": {
            "reason": {"type": "string"},
            "domain": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "google.rpc.BadRequest": {
        "description": "Which fields of the request are wrong, named as the JSON the client sent "
        "(`session.ticketRef`, `facts[0].text`) or the header or query parameter.",
        "properties": {
            "fieldViolations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "description": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            }
        },
    },
    "google.rpc.RetryInfo": {
        "description": "How long to wait before retrying (also sent as `Retry-After`).",
        "properties": {"retryDelay": _WKT["google.protobuf.Duration"]},
    },
}
ERROR_RESPONSES: dict[str, str] = {
    "4XX": "The request cannot be served as sent (400 invalid, 401 no or bad token, 403 role too low, "
    "404 not found, 405 wrong method, 409 conflict or stale etag, 413 body too large, 429 rate limited "
    "(with `Retry-After`), 431 headers too large, 499 cancelled).",
    "5XX": "The service failed or is unavailable (500 internal, with a trace id; 501 not implemented; "
    "503 unavailable, retry later; 504 no answer within the deadline).",
}
# Service tags when the protos carry no comment for them.
_HEALTH_TAG = "Health"


def _load_comments() -> dict[str, str]:
    try:
        module = importlib.import_module("flowpilot._comments")
    except ImportError:
        return {}
    comments: dict[str, str] = module.COMMENTS
    return comments


COMMENTS = _load_comments()


def comment(full_name: str) -> str:
    return COMMENTS.get(full_name, "")


def _status_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, detail in DETAIL_SCHEMAS.items():
        out[name] = {
            "type": "object",
            "description": detail["description"],
            "properties": {"@type": {"type": "string", "const": TYPE_PREFIX + name}, **detail["properties"]},
            "required": ["@type"],
        }
    out[STATUS] = {
        "type": "object",
        "description": "google.rpc.Status: the gRPC code, a message, and typed details "
        "(`@type` names each: ErrorInfo always, BadRequest for invalid fields, RetryInfo when rate limited).",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "google.rpc.Code"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "oneOf": [{"$ref": f"#/components/schemas/{n}"} for n in DETAIL_SCHEMAS],
                    "discriminator": {
                        "propertyName": "@type",
                        "mapping": {TYPE_PREFIX + n: f"#/components/schemas/{n}" for n in DETAIL_SCHEMAS},
                    },
                },
            },
        },
        "required": ["code", "message", "details"],
    }
    return out


OUT, IN, PATCH = "", "-Input", "-Patch"


def _described(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {**schema, "description": text} if text else schema


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = _status_schemas()

    def field(self, field: FD, mode: str = OUT, *, query: bool = False) -> dict[str, Any]:
        schema = self._single(field, mode, query=query)
        if field.is_repeated and not (field.message_type and field.message_type.GetOptions().map_entry):
            schema = {"type": "array", "items": schema}
            if max_size(field):
                schema["maxItems"] = max_size(field)
        fb = behaviors(field)
        notes = [comment(field.full_name)]
        if field_behavior_pb2.IMMUTABLE in fb:
            notes.append("Immutable: set when the resource is created, never changed afterwards.")
        if field_behavior_pb2.OUTPUT_ONLY in fb:
            schema = {**schema, "readOnly": True}
        return _described(schema, "\n\n".join(n for n in notes if n))

    def _single(self, field: FD, mode: str, *, query: bool) -> dict[str, Any]:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value = field.message_type.fields_by_name["value"]
                return {"type": "object", "additionalProperties": self._single(value, mode, query=query)}
            return self.message(field.message_type, mode)
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
            if query:
                # A filter or choice: the zero value (…_UNSPECIFIED) means "not given".
                values = [v.name for v in field.enum_type.values if v.number != 0]
                return {"type": "string", "enum": values}
            return self.enum(field.enum_type)
        return {}

    def enum(self, enum: descriptor.EnumDescriptor) -> dict[str, Any]:
        if enum.full_name not in self.components:
            lines = [comment(enum.full_name)] if comment(enum.full_name) else []
            for value in enum.values:
                text = comment(f"{enum.full_name}.{value.name}")
                lines.append(f"- `{value.name}`" + (f": {' '.join(text.split())}" if text else ""))
            self.components[enum.full_name] = {
                "type": "string",
                "enum": [v.name for v in enum.values],
                "description": "\n".join(lines),
            }
        return {"$ref": f"#/components/schemas/{enum.full_name}"}

    def message(self, message: descriptor.Descriptor, mode: str = OUT) -> dict[str, Any]:
        if message.full_name in _WKT:
            return dict(_WKT[message.full_name])
        name = message.full_name + mode
        if name not in self.components:
            self.components[name] = {}  # placeholder against recursion
            self.components[name] = self.object(message, mode)
        return {"$ref": f"#/components/schemas/{name}"}

    def object(
        self, message: descriptor.Descriptor, mode: str, skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        fields = [f for f in message.fields if f.name not in skip]
        schema: dict[str, Any] = {"type": "object"}
        text = comment(message.full_name)
        if text:
            schema["description"] = text
        schema["properties"] = {f.json_name: self.field(f, mode) for f in fields}
        if mode == OUT:
            # The gateway prints every field without presence, at its default too.
            required = [f.json_name for f in fields if not f.has_presence]
        elif mode == IN:
            required = [f.json_name for f in fields if field_behavior_pb2.REQUIRED in behaviors(f)]
        else:
            required = []
        if required:
            schema["required"] = required
        return schema


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
    """Fields neither in the path nor in the body, named as in the JSON body
    (lowerCamelCase, dotted; the gateway accepts the proto names too)."""
    if route.body == "*":
        return []
    params: list[dict[str, Any]] = []

    def add(message: descriptor.Descriptor, prefix: str, json_prefix: str, depth: int) -> None:
        for field in message.fields:
            path = prefix + field.name
            if path in bound or path == route.body or field_behavior_pb2.OUTPUT_ONLY in behaviors(field):
                continue
            nested = field.message_type
            if nested is not None and nested.full_name not in _WKT and not nested.GetOptions().map_entry:
                if depth < 2 and not field.is_repeated:
                    add(nested, path + ".", json_prefix + field.json_name + ".", depth + 1)
                continue
            if nested is not None and nested.full_name in (
                "google.protobuf.Struct",
                "google.protobuf.Value",
                "google.protobuf.ListValue",
                "google.protobuf.Any",
            ):
                continue
            schema = schemas.field(field, IN, query=True)
            param: dict[str, Any] = {"name": json_prefix + field.json_name, "in": "query", "required": False}
            if schema.get("description"):
                param["description"] = schema.pop("description")
            param["schema"] = schema
            params.append(param)

    add(route.method.input_type, "", "", 0)
    return params


def _error_responses() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{STATUS}"}}}
    return {code: {"description": text, "content": content} for code, text in ERROR_RESPONSES.items()}


def _probes() -> dict[str, Any]:
    ok_body = {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
        "required": ["status"],
    }
    ready_body = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "backends": {
                "type": "object",
                "description": "Each backend's gRPC health (its proto package → `SERVING`, `NOT_SERVING`, "
                "or the gRPC code of a failed check, e.g. `UNAVAILABLE`).",
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["status", "backends"],
    }

    def probe(operation_id: str, summary: str, description: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": operation_id,
                "tags": [_HEALTH_TAG],
                "summary": summary,
                "description": description,
                "security": [],
                "responses": responses,
            }
        }

    return {
        "/healthz": probe(
            "Gateway_Healthz",
            "Liveness",
            "Liveness probe: 200 while the gateway process serves HTTP. It checks nothing behind it, "
            "so a database or backend outage does not restart the gateway.",
            {"200": {"description": "Alive", "content": {"application/json": {"schema": ok_body}}}},
        ),
        "/readyz": probe(
            "Gateway_Readyz",
            "Readiness",
            "Readiness probe: asks every backend's gRPC health service (each of which follows its own "
            "database); 200 when all say `SERVING`, else 503 with each backend's status.",
            {
                "200": {
                    "description": "Every backend serving",
                    "content": {"application/json": {"schema": ready_body}},
                },
                "503": {
                    "description": "A backend is not serving (or its database is unreachable)",
                    "content": {"application/json": {"schema": ready_body}},
                },
            },
        ),
    }


def _body_and_responses(operation: dict[str, Any], route: Route, schemas: _Schemas, bound: set[str]) -> None:
    """An operation's request body (when it has one) and its success responses."""
    if route.body:
        mode = PATCH if route.http_method == "PATCH" else IN
        if route.body == "*":
            # The request message less what the path carries (inline: the path differs by route).
            skip = frozenset(v for v in bound if "." not in v)
            body_schema = schemas.object(route.method.input_type, mode, skip)
        else:
            body_schema = schemas.field(route.method.input_type.fields_by_name[route.body], mode)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        }
    if route.streams:
        operation["responses"]["200"] = _stream_response(route, schemas)
    elif route.empty_response:
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


def _stream_response(route: Route, schemas: _Schemas) -> dict[str, Any]:
    """A server-streaming method's 200: NDJSON lines or Server-Sent Events
    (``gateway.streaming``), each carrying one stream message or the error."""
    if route.response_body:
        message = schemas.field(route.method.output_type.fields_by_name[route.response_body])
    else:
        message = schemas.message(route.method.output_type)
    status = {"$ref": f"#/components/schemas/{STATUS}"}
    line = {
        "description": "One line of the body: `result`, a stream message; or `error`, the last line "
        "when the stream failed after it began.",
        "oneOf": [
            {"type": "object", "properties": {"result": message}, "required": ["result"]},
            {"type": "object", "properties": {"error": status}, "required": ["error"]},
        ],
    }
    events = (
        "Server-Sent Events: `event: message` with `data:` one stream message (JSON, as the "
        "`application/x-ndjson` lines' `result`) per message, then exactly one of `event: end` "
        "(`data: {}`: the stream completed) and `event: error` (`data:` a `google.rpc.Status`)."
    )
    return {
        "description": "A stream: sent message by message as the service produces them. "
        "`Accept: text/event-stream` selects Server-Sent Events; otherwise newline-delimited JSON "
        "(grpc-gateway's convention), one JSON object per line. Errors before the first message "
        "are the usual 4XX/5XX answers; after it, the status stays 200 and the error is the last "
        "line or event.",
        "content": {
            "application/x-ndjson": {"schema": line},
            "text/event-stream": {"schema": {"type": "string", "description": events}},
        },
    }


def document(routes: list[Route]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    services: dict[str, str] = {}
    for route in routes:
        path, params, bound = _path_and_params(route)
        tag = route.service.rsplit(".", 1)[-1]
        services.setdefault(tag, route.service)
        operation_id = f"{tag}_{route.method.name}"
        while operation_id in seen_ids:
            operation_id += "_alt"
        seen_ids.add(operation_id)
        role = route.method.GetOptions().Extensions[access_pb2.minimum_role]
        text = comment(route.method.full_name)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [tag],
            "summary": route.method.name,
            "description": (text + "\n\n" if text else "")
            + f"gRPC `{route.method.full_name}`. Minimum role: `{access_pb2.Role.Name(role)}`.",
            "parameters": params + _query_params(route, schemas, bound),
            "responses": {},
        }
        _body_and_responses(operation, route, schemas, bound)
        operation["responses"].update(_error_responses())
        paths.setdefault(path, {})[route.http_method.lower()] = operation
    paths.update(_probes())
    tags = [
        {"name": tag, "description": comment(full) or f"gRPC service `{full}`."}
        for tag, full in sorted(services.items())
    ]
    tags.append(
        {"name": _HEALTH_TAG, "description": "Liveness and readiness probes of the gateway (no token)."}
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FlowPilot API",
            "version": "v1",
            "description": "HTTP/JSON API of the FlowPilot services, derived from the protos' google.api.http "
            "annotations. JSON follows the proto3 mapping: lowerCamelCase names (snake_case accepted on input), "
            "64-bit integers as strings, enums by name, timestamps in RFC 3339. Errors are google.rpc.Status.\n\n"
            "Schemas come in variants: `pkg.Message` as responses print it (always-present fields required), "
            "`pkg.Message-Input` for request bodies (REQUIRED fields required) and `pkg.Message-Patch` for "
            "PATCH bodies (partial).",
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def main(argv: list[str] | None = None) -> None:
    """Writes the document for every service in the generated package, as the
    gateway would serve it (no backends needed): ``python -m gateway.openapi OUT``."""
    import argparse
    import json
    from pathlib import Path

    from gateway.routes import compile_routes, discover_services

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document(compile_routes(discover_services())), indent=1) + "\n")


if __name__ == "__main__":
    main()
