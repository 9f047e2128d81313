"""Messages → JSON objects, as ``json_format.MessageToDict(message,
always_print_fields_with_no_presence=True)`` makes them, by writers compiled
once per message type.

``json_format`` walks a message's descriptor on every call, field by field,
in Python; a compiled writer knows its message's fields, their JSON names
and how each value is written, and does only the reading and writing. What
it writes is ``json_format``'s mapping exactly (tests/gateway/test_protojson
compares the two on every message type the gateway serves): lowerCamelCase
names; every field without presence, set or not; fields with presence only
when set; enums by name (an unknown number as the number); 64-bit integers
as strings; bytes as base64; ``NaN`` and infinities as strings; Timestamp,
Duration and FieldMask as their JSON strings; wrappers as their value. The
rarer well-known types (Struct, Value, ListValue, Any) and closed enums are
written by ``json_format`` itself. Keys come in field declaration order.
"""

from __future__ import annotations

import base64
import datetime
import functools
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor, json_format
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

FD = descriptor.FieldDescriptor
Writer = Callable[[Message], dict[str, Any]]
Value = Callable[[Any], Any]

# json_format's own printer (private, but the one place its mapping lives),
# for the few types written by it and for enum names.
_PRINTER: Any = json_format._Printer(always_print_fields_with_no_presence=True)  # type: ignore[attr-defined]
_DELEGATED = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"}
)
_STRING_FORMS = frozenset({"google.protobuf.Duration", "google.protobuf.FieldMask"})


def to_json_object(message: Message) -> Any:
    """``message`` as ``json_format.MessageToDict`` writes it (every field): an
    object, or for a well-known type its JSON form (a Timestamp is a string)."""
    return _message_writer(message.DESCRIPTOR)(message)


@functools.cache
def writer(message: descriptor.Descriptor) -> Writer:
    """The JSON writer of one message type (made once; the cache holds one
    per message type of the served APIs)."""
    fields = [(f.name, f.json_name, _field_writer(f), f.has_presence) for f in message.fields]
    if not any(present for *_, present in fields):
        plain = [(name, key, write) for name, key, write, _ in fields]
        return lambda msg: {key: write(getattr(msg, name)) for name, key, write in plain}

    def write_message(msg: Message) -> dict[str, Any]:
        out = {}
        for name, key, write, presence in fields:
            if not presence or msg.HasField(name):
                out[key] = write(getattr(msg, name))
        return out

    return write_message


def _field_writer(field: descriptor.FieldDescriptor) -> Value:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key_field, value_field = message.fields_by_name["key"], message.fields_by_name["value"]
        value = _value_writer(value_field)
        if key_field.type == FD.TYPE_BOOL:
            return lambda entries: {("true" if k else "false"): value(entries[k]) for k in entries}
        return lambda entries: {str(k): value(entries[k]) for k in entries}
    value = _value_writer(field)
    if field.is_repeated:
        return lambda values: [value(v) for v in values]
    return value


def _value_writer(field: descriptor.FieldDescriptor) -> Value:
    """How one value of ``field`` is written."""
    kind = field.cpp_type
    if kind == FD.CPPTYPE_MESSAGE:
        assert field.message_type is not None
        return _message_writer(field.message_type)
    if kind == FD.CPPTYPE_ENUM:
        assert field.enum_type is not None
        enum = field.enum_type
        if enum.is_closed or enum.full_name == "google.protobuf.NullValue":
            return functools.partial(_PRINTER._FieldToJsonObject, field)
        names = {v.number: _PRINTER._FieldToJsonObject(field, v.number) for v in enum.values}
        return lambda number: names.get(number, number)
    if field.type == FD.TYPE_BYTES:
        return lambda data: base64.b64encode(data).decode("ascii")
    if kind == FD.CPPTYPE_STRING:
        return _same
    if kind == FD.CPPTYPE_BOOL:
        return bool
    if kind in (FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        return str
    if kind == FD.CPPTYPE_FLOAT:
        return _float
    if kind == FD.CPPTYPE_DOUBLE:
        return _double
    return _same  # 32-bit integers


@functools.cache
def _message_writer(message: descriptor.Descriptor) -> Value:
    name = message.full_name
    if name == "google.protobuf.Timestamp":
        return _timestamp
    if name in _STRING_FORMS:
        return _to_json_string
    if message.file.name == "google/protobuf/wrappers.proto":
        value = _value_writer(message.fields_by_name["value"])
        return lambda wrapper: value(wrapper.value)
    if name in _DELEGATED:
        return _delegated
    # Resolved at the first write, not now: message types may nest themselves.
    resolved: list[Writer] = []

    def write_nested(sub: Message) -> dict[str, Any]:
        if not resolved:
            resolved.append(writer(message))
        return resolved[0](sub)

    return write_nested


def _delegated(message: Message) -> Any:
    return _PRINTER._MessageToJsonObject(message)


def _same(value: Any) -> Any:
    return value


def _to_json_string(message: Any) -> str:
    text: str = message.ToJsonString()
    return text


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return None


def _double(value: float) -> float | str:
    if value - value == 0:  # finite
        return value
    return _special(value) or value


def _float(value: float) -> float | str:
    if value - value == 0:
        result: float = type_checkers.ToShortestFloat(value)
        return result
    return _special(value) or value


# Timestamp's valid range (0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    """``YYYY-MM-DD`` of a day counted from 1970-01-01 (dates repeat: most
    timestamps of a response fall on a few days)."""
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=days)).isoformat()


def _timestamp(stamp: Any) -> str:
    """``Timestamp.ToJsonString`` (RFC 3339 in UTC, 0, 3, 6 or 9 fractional
    digits), without building a datetime for each."""
    seconds, nanos = stamp.seconds, stamp.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        return _to_json_string(stamp)  # raises as json_format does
    days, second = divmod(seconds, 86_400)
    hours, second = divmod(second, 3600)
    minutes, second = divmod(second, 60)
    text = f"{_day(days)}T{hours:02d}:{minutes:02d}:{second:02d}"
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{text}.{nanos // 1000:06d}Z"
    return f"{text}.{nanos:09d}Z"


# ------------------------------------------------------------------ reading

_NOT_READ = object()
Reader = Callable[[Any], Any]  # a JSON value -> the field's value, or _NOT_READ
_INT32 = frozenset({FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32})
_UINT32 = frozenset({FD.TYPE_UINT32, FD.TYPE_FIXED32})


def parse_dict(obj: dict[str, Any], message: Message) -> None:
    """``json_format.ParseDict(obj, message)`` into a new (empty) message.

    An object of the common, plain kind (each key a field's name or JSON
    name, once; strings for strings, booleans for bools, whole numbers in
    range for 32-bit integers, names for open enums, objects for sub-messages
    that are not well-known types) is read by readers compiled per message
    type. Anything else (lists, maps, null, well-known types, 64-bit integers,
    numbers as text, oneof members, unknown keys) is read by ``json_format``
    itself, from the start, so what it accepts and the errors it raises are
    its own."""
    if not _read_plain(obj, message):
        message.Clear()
        json_format.ParseDict(obj, message)


def _read_plain(obj: dict[str, Any], message: Message) -> bool:
    readers = _readers(message.DESCRIPTOR)
    values: dict[str, Any] = {}
    for key, value in obj.items():
        entry = readers.get(key)
        if entry is None:
            return False
        name, read = entry
        if name in values:  # both spellings of one field
            return False
        values[name] = read(value)
        if values[name] is _NOT_READ:
            return False
    try:
        for name, value in values.items():
            if type(value) is dict:  # a sub-message's object, read into it
                sub = getattr(message, name)
                sub.SetInParent()
                if not _read_plain(value, sub):
                    return False
            else:
                setattr(message, name, value)
    except (TypeError, ValueError):  # e.g. a lone surrogate in a string
        return False
    return True


@functools.cache
def _readers(message: descriptor.Descriptor) -> dict[str, tuple[str, Reader]]:
    """JSON key (the field's name and its JSON name) -> field name and reader,
    for the fields read without ``json_format``."""
    readers: dict[str, tuple[str, Reader]] = {}
    for field in message.fields:
        read = _plain_reader(field)
        if read is not None:
            readers[field.name] = readers[field.json_name] = (field.name, read)
    return readers


def _plain_reader(field: descriptor.FieldDescriptor) -> Reader | None:
    if field.is_repeated or field.containing_oneof is not None:
        return None
    if field.message_type is not None:  # an object for a plain sub-message
        if field.message_type.full_name.startswith("google.protobuf."):
            return None
        return lambda value: value if type(value) is dict else _NOT_READ
    if field.type == FD.TYPE_STRING:
        return lambda value: value if type(value) is str else _NOT_READ
    if field.type == FD.TYPE_BOOL:
        return lambda value: value if type(value) is bool else _NOT_READ
    if field.type in _INT32:
        return lambda value: value if type(value) is int and -(2**31) <= value < 2**31 else _NOT_READ
    if field.type in _UINT32:
        return lambda value: value if type(value) is int and 0 <= value < 2**32 else _NOT_READ
    if field.type == FD.TYPE_ENUM:
        assert field.enum_type is not None
        if field.enum_type.is_closed:
            return None
        numbers = {v.name: v.number for v in field.enum_type.values}
        return lambda value: numbers.get(value, _NOT_READ) if type(value) is str else _NOT_READ
    return None
