"""HTTP request → gRPC request message, gRPC response → HTTP JSON.

JSON follows the proto3 JSON mapping (``google.protobuf.json_format``; out,
through the writers of ``gateway.protojson``, compiled per message type):
lowerCamelCase out, both spellings in, 64-bit integers as strings, enums by
name, Timestamp as RFC 3339, FieldMask as ``"a,b.c"``. Fields not bound by
the path or the body come from the query string: dotted paths, repeated keys
for repeated fields, enums by name or number, well-known types in their JSON
string form. Anything the request cannot mean is a 400 naming the problem.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import orjson
from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from gateway import protojson
from gateway.errors import bad_request
from gateway.routes import Route

FD = descriptor.FieldDescriptor
_INTS = {
    FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_SINT32,
    FD.TYPE_SINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64, FD.TYPE_SFIXED32, FD.TYPE_SFIXED64,
}  # fmt: skip
_FLOATS = {FD.TYPE_FLOAT, FD.TYPE_DOUBLE}
# Well-known types that have a JSON string (or scalar) form.
_WKT_SCALAR = {
    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask",
    "google.protobuf.StringValue", "google.protobuf.BytesValue", "google.protobuf.BoolValue",
    "google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue",
}  # fmt: skip


def resolve(message: descriptor.Descriptor, dotted: str) -> list[descriptor.FieldDescriptor] | None:
    """Fields along a dotted path, accepting proto and lowerCamelCase names."""
    fields: list[descriptor.FieldDescriptor] = []
    current: descriptor.Descriptor | None = message
    for step in dotted.split("."):
        if current is None:
            return None
        found = current.fields_by_name.get(step) or current.fields_by_camelcase_name.get(step)
        if found is None:
            return None
        fields.append(found)
        current = (
            found.message_type
            if found.message_type and found.message_type.full_name not in _WKT_SCALAR
            else None
        )
    return fields


def _scalar(field: descriptor.FieldDescriptor, text: str, where: str) -> Any:
    try:
        if field.type == FD.TYPE_STRING:
            return text
        if field.type == FD.TYPE_BYTES:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if field.type in _INTS:
            return int(text)
        if field.type in _FLOATS:
            return float(text)
        if field.type == FD.TYPE_BOOL:
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if field.type == FD.TYPE_ENUM:
            assert field.enum_type is not None
            value = field.enum_type.values_by_name.get(text)
            if value is not None:
                return value.number
            number = int(text)
            if number not in field.enum_type.values_by_number:
                raise ValueError("unknown enum number")
            return number
    except ValueError as exc:
        raise bad_request(f"{where}: invalid value {text!r} ({exc})", field=where) from None
    raise bad_request(f"{where}: cannot be set from text", field=where)


def _set(message: Message, fields: Sequence[descriptor.FieldDescriptor], text: str, where: str) -> None:
    target = message
    for step in fields[:-1]:
        target = getattr(target, step.name)
    last = fields[-1]
    if last.message_type is not None:
        if last.message_type.full_name not in _WKT_SCALAR:
            raise bad_request(f"{where}: a message cannot be set from the query string", field=where)
        sub = getattr(target, last.name).add() if last.is_repeated else getattr(target, last.name)
        try:
            value: Any = text
            if last.message_type.full_name.endswith(
                ("Int32Value", "Int64Value", "UInt32Value", "UInt64Value")
            ):
                value = int(text)
            elif last.message_type.full_name.endswith(("FloatValue", "DoubleValue")):
                value = float(text)
            elif last.message_type.full_name.endswith("BoolValue"):
                value = text.lower() in ("true", "1")
            json_format.Parse(json.dumps(value), sub)
        except (json_format.ParseError, ValueError) as exc:
            raise bad_request(f"{where}: invalid value {text!r} ({exc})", field=where) from None
        return
    value = _scalar(last, text, where)
    try:
        if last.is_repeated:
            getattr(target, last.name).append(value)
        else:
            setattr(target, last.name, value)
    except (ValueError, TypeError) as exc:  # e.g. out of the field's integer range
        raise bad_request(f"{where}: invalid value {text!r} ({exc})", field=where) from None


def _present(obj: Any, fields: Sequence[descriptor.FieldDescriptor]) -> Any:
    """The JSON value at a field path of a parsed body, or None."""
    for field in fields:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(field.name, obj.get(field.json_name))
    return obj


# Deepest nesting of arrays and objects a body may have (the deepest FlowPilot
# request nests far less; protobuf's own parser stops at 100).
MAX_DEPTH = 64


def parse_json(raw: bytes) -> Any:
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise bad_request(f"body nests deeper than {MAX_DEPTH} levels", reason="BODY_TOO_DEEP")
    try:
        parsed = json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("body is not UTF-8", reason="MALFORMED_JSON") from None
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", reason="MALFORMED_JSON"
        ) from None
    if _SURROGATE_ESCAPE.search(raw) and not _all_text(parsed):
        # JSON's \ud800 escapes decode to a lone surrogate, which is no text
        # (protobuf refuses it with an error of its own).
        raise bad_request("body holds a lone UTF-16 surrogate escape", reason="MALFORMED_JSON")
    return parsed


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _all_text(value: Any) -> bool:
    """Whether every string in ``value`` (keys too) is valid Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_all_text(k) and _all_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_text(item) for item in value)
    return True


# The scan below runs before any parser, in C (regex, translate, accumulate):
# strings (their brackets do not count) are dropped, then each bracket
# becomes +1 or -1 and the running sum's peak is the depth.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth(raw: bytes) -> int:
    """How deeply ``[`` and ``{`` nest in ``raw``, outside strings."""
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_STEPS)
    return max(itertools.accumulate(memoryview(brackets).cast("b")), default=0)


def build_request(
    route: Route, path_values: dict[str, str], query: Sequence[tuple[str, str]], raw_body: bytes
) -> Message:
    request: Message = route.input_class()
    body_json = _read_body(route, raw_body, request)
    bound = _bind_path(route, path_values, body_json, request)
    _bind_query(route, query, bound, request)
    if (
        (
            route.http_method == "PATCH"
            and route.body
            and "update_mask" in route.input_class.DESCRIPTOR.fields_by_name
        )
        and not request.HasField("update_mask")
        and isinstance(body_json, dict)
    ):
        paths = _mask_paths(route, body_json, bound)
        request.update_mask.paths.extend(paths)  # type: ignore[attr-defined]
    return request


def _read_body(route: Route, raw_body: bytes, request: Message) -> Any:
    """The body's JSON, set into ``request`` (None for a route without a body)."""
    if not route.body:
        if raw_body.strip():
            raise bad_request(f"{route.http_method} {route.template.source} takes no body")
        return None
    body_json = parse_json(raw_body) if raw_body.strip() else {}
    try:
        if route.body == "*":
            if not isinstance(body_json, dict):
                raise bad_request("body must be a JSON object", reason="MALFORMED_JSON")
            protojson.parse_dict(body_json, request)
        else:
            field = route.input_class.DESCRIPTOR.fields_by_name[route.body]
            protojson.parse_dict({field.json_name: body_json}, request)
    except json_format.ParseError as exc:
        raise bad_request(
            f"body does not match {route.method.input_type.full_name}: {exc}", reason="INVALID_BODY"
        ) from None
    return body_json


def _bind_path(route: Route, path_values: dict[str, str], body_json: Any, request: Message) -> set[str]:
    """Sets the path's variables (a body saying otherwise is a conflict); the field paths bound."""
    bound: set[str] = set()
    for variable, value in path_values.items():
        fields = resolve(route.method.input_type, variable)
        assert fields is not None  # checked when the routes were compiled
        if route.body:
            in_body = body_json if route.body == "*" else {route.body: body_json}
            given = _present(in_body, fields)
            if given is not None and given != value:
                raise bad_request(
                    f"{variable} is {value!r} in the path but {given!r} in the body",
                    field=variable,
                    reason="PATH_BODY_CONFLICT",
                )
        _set(request, fields, value, variable)
        bound.add(".".join(f.name for f in fields))
    return bound


def _bind_query(route: Route, query: Sequence[tuple[str, str]], bound: set[str], request: Message) -> None:
    """Sets the query parameters: fields the path or body do not already bind."""
    if query and route.body == "*":
        raise bad_request(
            f"query parameters are not accepted: the body carries the whole request ({query[0][0]})",
            field=query[0][0],
            reason="UNKNOWN_PARAMETER",
        )
    for key, value in query:
        fields = resolve(route.method.input_type, key)
        if fields is None:
            raise bad_request(f"unknown query parameter {key!r}", field=key, reason="UNKNOWN_PARAMETER")
        path = ".".join(f.name for f in fields)
        if path in bound or (route.body and (path == route.body or path.startswith(route.body + "."))):
            raise bad_request(
                f"{key} is already bound by the path or body", field=key, reason="UNKNOWN_PARAMETER"
            )
        _set(request, fields, value, key)


def _mask_paths(route: Route, body: dict[str, Any], bound: set[str]) -> list[str]:
    """The fields a PATCH body names, as update_mask paths (AIP-134)."""
    prefix = "" if route.body == "*" else route.body + "."
    target = (
        route.method.input_type
        if route.body == "*"
        else route.method.input_type.fields_by_name[route.body].message_type
    )
    if target is None:
        return []
    message: descriptor.Descriptor = target

    def walk(obj: dict[str, Any], desc: descriptor.Descriptor, path: str) -> list[str]:
        out: list[str] = []
        for key, value in obj.items():
            field = desc.fields_by_name.get(key) or desc.fields_by_camelcase_name.get(key)
            if field is None or field.name == "update_mask":
                continue
            full = f"{path}{field.name}"
            if prefix + full in bound:
                continue
            nested = field.message_type
            if (
                isinstance(value, dict)
                and nested is not None
                and not field.is_repeated
                and not nested.GetOptions().map_entry
                and not nested.full_name.startswith("google.protobuf.")
            ):
                out += walk(value, nested, full + ".")
            else:
                out.append(full)
        return out

    paths = walk(body, message, "")
    # The resource's name (or etag) names what to update; they are not updated.
    return [p for p in paths if p not in ("name", "etag")]


def render(route: Route, response: Message) -> bytes:
    target: Message = getattr(response, route.response_body) if route.response_body else response
    if route.response_body:
        field = response.DESCRIPTOR.fields_by_name[route.response_body]
        if field.message_type is None or field.is_repeated:
            return orjson.dumps(protojson.to_json_object(response).get(field.json_name))
    return orjson.dumps(to_json_object(target))


# A sub-message this large (serialized) is rendered once per distinct content
# and remembered: a walk's tree snapshot comes back whole on every step, and
# json_format renders it in Python, field by field. Renderings of up to
# _REMEMBERED_BYTES of serialized content are kept per process (least
# recently used go first).
_LARGE_BYTES = 2048
_REMEMBERED_BYTES = 4 * 1024 * 1024
_rendered: OrderedDict[tuple[str, bytes], dict[str, Any]] = OrderedDict()
_rendered_bytes = 0


def to_json_object(message: Message) -> dict[str, Any]:
    """``json_format.MessageToDict`` (every field, lowerCamelCase), with large
    singular sub-messages taken from the memo of earlier renderings. The
    result must be read, not changed: parts of it are shared."""
    large = [
        field
        for field in _singular_message_fields(message.DESCRIPTOR)
        if message.HasField(field.name) and getattr(message, field.name).ByteSize() > _LARGE_BYTES
    ]
    if not large:
        whole: dict[str, Any] = protojson.to_json_object(message)
        return whole
    rest = type(message)()
    rest.CopyFrom(message)
    for field in large:
        rest.ClearField(field.name)
    out: dict[str, Any] = protojson.to_json_object(rest)
    for field in large:
        out[field.json_name] = _remembered(getattr(message, field.name))
    return out


def _remembered(message: Message) -> dict[str, Any]:
    global _rendered_bytes
    key = (message.DESCRIPTOR.full_name, message.SerializeToString(deterministic=True))
    found = _rendered.get(key)
    if found is not None:
        _rendered.move_to_end(key)
        return found
    found = cast(dict[str, Any], protojson.to_json_object(message))
    if len(key[1]) <= _REMEMBERED_BYTES:
        _rendered[key] = found
        _rendered_bytes += len(key[1])
        while _rendered_bytes > _REMEMBERED_BYTES:
            (_, dropped), _ = _rendered.popitem(last=False)
            _rendered_bytes -= len(dropped)
    return found


@functools.cache
def _singular_message_fields(message: descriptor.Descriptor) -> tuple[descriptor.FieldDescriptor, ...]:
    """Fields that may hold a large sub-message: singular, not a well-known type
    (those have JSON forms of their own and are small)."""
    return tuple(
        field
        for field in message.fields
        if field.message_type is not None
        and not field.is_repeated
        and not field.message_type.full_name.startswith("google.protobuf.")
    )
