"""Input rules declared in the protos, enforced for every request.

Two annotations drive it: ``google.api.field_behavior`` (REQUIRED fields must
be set; IDENTIFIER fields must be set on updates) and ``flowpilot.api.v1
.max_size`` (longest string, largest repeated field). In an update request
(one with an ``update_mask``) the resource's REQUIRED fields are checked by
:func:`update_paths` against the effective mask, which only the method knows.
Violations name the field by its proto path, as AIP-193 asks
(``setting.value``, ``steps[2].text``).

One rule holds for every string of every request, annotated or not, nested
or in a map, well-known types included: it may not contain NUL (U+0000),
which PostgreSQL text and JSON cannot store (:func:`text_violations`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from flowpilot.api.v1 import access_pb2
from google.api import field_behavior_pb2
from google.protobuf import descriptor
from google.protobuf.message import Message

from services.core.errors import MAX_FIELD_VIOLATIONS, FieldViolation, InvalidArgument

_REQUIRED = field_behavior_pb2.REQUIRED
_IDENTIFIER = field_behavior_pb2.IDENTIFIER
_TYPE_MESSAGE = descriptor.FieldDescriptor.TYPE_MESSAGE
_TYPE_STRING = descriptor.FieldDescriptor.TYPE_STRING
_TYPE_BYTES = descriptor.FieldDescriptor.TYPE_BYTES
# Field descriptors come from the C (upb) implementation at run time, whose
# stub type differs from the pure-Python one; both have the same interface.
Field = Any
# Well-known types are values, not resources: their insides are not checked.
_OPAQUE = ("google.protobuf.",)


def behaviors(field: Field) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def max_size(field: Field) -> int:
    return int(field.GetOptions().Extensions[access_pb2.max_size])


def _is_set(message: Message, field: Field) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.type == _TYPE_MESSAGE or field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


@dataclass(frozen=True, slots=True)
class _Rule:
    """What the annotations ask of one field, read from its options once."""

    field: Field
    name: str
    required: bool
    identifier: bool
    limit: int
    unit: str  # for a length limit on a scalar: characters or bytes; "" for none
    nested: bool  # a message (or repeated message) whose own fields are checked


@functools.cache
def _rules(message_type: descriptor.Descriptor) -> tuple[_Rule, ...]:
    """The fields of ``message_type`` that carry a rule (the rest are skipped per call)."""
    rules = []
    for field in message_type.fields:
        fb = behaviors(field)
        is_message = field.type == _TYPE_MESSAGE
        nested = is_message and not _opaque(field) and not (field.is_repeated and _is_map(field))
        unit = {_TYPE_STRING: "characters", _TYPE_BYTES: "bytes"}.get(field.type, "")
        rule = _Rule(
            field=field,
            name=field.name,
            required=_REQUIRED in fb,
            identifier=_IDENTIFIER in fb,
            limit=max_size(field),
            unit=unit if not field.is_repeated else "",
            nested=nested,
        )
        if rule.required or rule.identifier or rule.limit or rule.nested:
            rules.append(rule)
    return tuple(rules)


def violations(request: Message) -> list[FieldViolation]:
    """Every violation in ``request``, in field order."""
    found: list[FieldViolation] = []
    is_update = "update_mask" in request.DESCRIPTOR.fields_by_name
    _walk(request, "", found, is_update=is_update, depth=0)
    return found


def text_violations(request: Message) -> list[FieldViolation]:
    """A violation for each string in ``request`` (at any depth) that holds NUL."""
    found: list[FieldViolation] = []
    _walk_text(request, "", found)
    return found


def _walk_text(message: Message, prefix: str, found: list[FieldViolation]) -> None:
    field: Field
    for field, value in message.ListFields():
        if len(found) >= MAX_FIELD_VIOLATIONS:
            return
        path = f"{prefix}{field.name}"
        if field.type == _TYPE_MESSAGE and field.is_repeated and _is_map(field):
            _walk_text_map(field, value, path, found)
        elif field.type == _TYPE_MESSAGE:
            if field.is_repeated:
                for index, item in enumerate(value):
                    _walk_text(item, f"{path}[{index}].", found)
            else:
                _walk_text(value, f"{path}.", found)
        elif field.type == _TYPE_STRING:
            if field.is_repeated:
                found += [FieldViolation(f"{path}[{i}]", _NUL) for i, v in enumerate(value) if "\x00" in v]
            elif "\x00" in value:
                found.append(FieldViolation(path, _NUL))


def _walk_text_map(field: Field, entries: Any, path: str, found: list[FieldViolation]) -> None:
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for key, item in entries.items():
        where = f"{path}[{key!r}]"
        if key_field.type == _TYPE_STRING and "\x00" in key:
            found.append(FieldViolation(where, _NUL))
        if value_field.type == _TYPE_MESSAGE:
            _walk_text(item, f"{where}.", found)
        elif value_field.type == _TYPE_STRING and "\x00" in item:
            found.append(FieldViolation(where, _NUL))


_NUL = "must not contain the NUL character (U+0000)"


# Repeated fields without a declared ``max_size`` (well-known types' insides
# too: a Struct's fields, a ListValue's values, a FieldMask's paths) hold at
# most this many elements.
DEFAULT_MAX_ELEMENTS = 10_000
# Requests at least this large are read on the wire before they are decoded
# (smaller ones decode into at most a few MB whatever they hold).
COUNTED_FROM_BYTES = 16 * 1024
# Fields a request may hold in all, nested ones included: the largest valid
# request (a flow of 500 nodes with 20 options each) has about 12,000; the
# read stops there (~50 ms of CPU at most).
MAX_WIRE_FIELDS = 50_000
# The well-known types whose insides are counted (the others hold no repeated field).
_COUNTED_OPAQUE = (
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.FieldMask",
)


def check_wire(raw: bytes, message_type: descriptor.Descriptor) -> None:
    """Reads the serialized ``raw`` without decoding it: INVALID_ARGUMENT when
    a repeated field holds more elements than its limit, when the request has
    more than MAX_WIRE_FIELDS fields in all (what is read here is bounded
    too), or when it is not a valid message (groups included: proto3 has
    none). Decoded, a request of tiny elements is many times its size (4 MiB
    of empty nested messages is over 120 MB): such a request is refused
    before it is decoded."""
    budget = _Budget(MAX_WIRE_FIELDS)
    try:
        found = _count(
            memoryview(raw), 0, len(raw), message_type, prefix="", counts={}, budget=budget, depth=0
        )
    except _Malformed:
        raise malformed_request() from None
    except _OverBudget:
        raise InvalidArgument(
            FieldViolation("request", f"has more than {MAX_WIRE_FIELDS:,} fields"),
            reason="REQUEST_TOO_COMPLEX",
        ) from None
    if found is not None:
        raise InvalidArgument(found)


def malformed_request() -> InvalidArgument:
    """Bytes that are not a message of the method's request type (the parser's
    own text names library internals; this says what it means)."""
    return InvalidArgument(
        FieldViolation("request", "is not a valid message of this method's request type"),
        "the request could not be decoded",
        reason="MALFORMED_REQUEST",
    )


class _Malformed(Exception):
    pass


class _OverBudget(Exception):
    pass


class _Budget:
    """Fields a wire read may still visit."""

    def __init__(self, fields: int) -> None:
        self.left = fields

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _OverBudget


@dataclass(frozen=True, slots=True)
class _Counted:
    field: Field
    limit: int  # 0: not repeated
    inner: descriptor.Descriptor | None  # a message type to count inside


@functools.cache
def _counted(message_type: descriptor.Descriptor) -> dict[int, _Counted]:
    """Field number → what to count, for the fields of ``message_type`` that
    are repeated or lead to repeated fields."""
    counted = {}
    for field in message_type.fields:
        inner = None
        if field.type == _TYPE_MESSAGE and _holds_repeated(field.message_type):
            inner = field.message_type
        if field.is_repeated or inner is not None:
            limit = (max_size(field) or DEFAULT_MAX_ELEMENTS) if field.is_repeated else 0
            counted[field.number] = _Counted(field, limit, inner)
    return counted


@functools.cache
def _holds_repeated(message_type: descriptor.Descriptor, _seen: frozenset[str] = frozenset()) -> bool:
    name = message_type.full_name
    if name in _seen or (name.startswith(_OPAQUE) and name not in _COUNTED_OPAQUE):
        return name in _seen  # a recursive type: counted where it repeats
    seen = _seen | {name}
    return any(
        f.is_repeated or (f.type == _TYPE_MESSAGE and _holds_repeated(f.message_type, seen))
        for f in message_type.fields
    )


def _count(
    buf: memoryview,
    pos: int,
    end: int,
    message_type: descriptor.Descriptor,
    *,
    prefix: str,
    counts: dict[str, int],
    budget: _Budget,
    depth: int,
) -> FieldViolation | None:
    if depth > 100:  # past protobuf's own nesting limit: the decoder refuses it
        raise _Malformed
    fields = _counted(message_type)
    while pos < end:
        budget.spend()
        key, pos = _varint(buf, pos)
        pos, length = _skip(buf, pos, key & 7)
        if pos > end:
            raise _Malformed
        entry = fields.get(key >> 3)
        if entry is None:
            continue
        # Counted by path: occurrences of a singular message field merge.
        path = f"{prefix}{entry.field.name}"
        if entry.limit:
            n = counts[path] = counts.get(path, 0) + 1
            if n > entry.limit:
                return FieldViolation(path, f"must have at most {entry.limit} elements")
            path = f"{path}[{n - 1}]"
        if entry.inner is not None and key & 7 == 2:
            found = _count(
                buf,
                pos - length,
                pos,
                entry.inner,
                prefix=f"{path}.",
                counts=counts,
                budget=budget,
                depth=depth + 1,
            )
            if found is not None:
                return found
    return None


def _skip(buf: memoryview, pos: int, wire: int) -> tuple[int, int]:
    """The position after a field's value of wire type ``wire`` at ``pos``,
    and its length when it is length-delimited (else 0)."""
    if wire == 0:
        return _varint(buf, pos)[1], 0
    if wire == 1:
        return pos + 8, 0
    if wire == 5:
        return pos + 4, 0
    if wire == 2:
        length, pos = _varint(buf, pos)
        return pos + length, length
    raise _Malformed


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(buf):
            raise _Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise _Malformed


def update_paths(
    resource: Message,
    mask: Sequence[str],
    *,
    allowed: Collection[str],
    default: Collection[str],
    prefix: str,
) -> set[str]:
    """The fields an update changes: the mask, or ``default`` when it is empty.

    Unknown paths are INVALID_ARGUMENT on ``update_mask``; a REQUIRED field the
    update names must be set.
    """
    paths = set(mask) or set(default)
    unknown = sorted(paths - set(allowed))
    if unknown:
        raise InvalidArgument(
            FieldViolation(
                "update_mask", f"cannot update {', '.join(unknown)}; updatable: {', '.join(sorted(allowed))}"
            )
        )
    missing = [
        FieldViolation(f"{prefix}.{path}", "is required")
        for path in sorted(paths)
        if _REQUIRED in behaviors(resource.DESCRIPTOR.fields_by_name[path])
        and not _is_set(resource, resource.DESCRIPTOR.fields_by_name[path])
    ]
    if missing:
        raise InvalidArgument(missing)
    return paths


def _walk(
    message: Message,
    prefix: str,
    found: list[FieldViolation],
    *,
    is_update: bool,
    depth: int,
) -> None:
    in_resource = is_update and depth == 1
    for rule in _rules(message.DESCRIPTOR):
        if len(found) >= MAX_FIELD_VIOLATIONS:
            return
        field, path = rule.field, f"{prefix}{rule.name}"
        if rule.required and not in_resource and not _is_set(message, field):
            found.append(FieldViolation(path, "is required"))
        if rule.identifier and in_resource and not _is_set(message, field):
            found.append(FieldViolation(path, "is required to name the resource to update"))
        value = getattr(message, rule.name)
        if field.is_repeated:
            if rule.limit and len(value) > rule.limit:
                found.append(FieldViolation(path, f"must have at most {rule.limit} elements"))
            elif rule.nested:
                for index, item in enumerate(value):
                    _walk(item, f"{path}[{index}].", found, is_update=False, depth=depth + 1)
            continue
        if rule.unit and rule.limit and len(value) > rule.limit:
            found.append(FieldViolation(path, f"must be at most {rule.limit} {rule.unit}"))
        elif rule.nested and message.HasField(rule.name):
            _walk(value, f"{path}.", found, is_update=is_update, depth=depth + 1)


def _opaque(field: Field) -> bool:
    return str(field.message_type.full_name).startswith(_OPAQUE)


def _is_map(field: Field) -> bool:
    return bool(field.message_type.GetOptions().map_entry)


def nonblank(value: str, field: str) -> str:
    """``value`` without surrounding blanks; INVALID_ARGUMENT when nothing is left."""
    if not value.strip():
        raise InvalidArgument(FieldViolation(field, "must not be blank"))
    return value.strip()
