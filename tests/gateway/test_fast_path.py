"""The gateway's fast paths against the slow, plain readings they replace:
a template's regular expression against segment-by-segment decoding, the
compiled JSON writers against ``json_format``, and the gateway without
recorded spans against the one with OpenTelemetry's middleware and
interceptors (same status, body and headers; the trace still continues)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf import any_pb2, descriptor, json_format, message_factory, timestamp_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway import protojson
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.errors import HttpError
from gateway.routes import Route, compile_routes, discover_services
from gateway.template import parse
from tests.gateway.harness import MESSAGING, serve_gateway

FD = descriptor.FieldDescriptor
AUTH = {"Authorization": "Bearer test-token"}

# ------------------------------------------------------------------ templates

GATEWAY = Gateway(
    GatewayConfig(),
    [*discover_services(), MESSAGING],
    {**GatewayConfig().backends(), "conformance.v1": "127.0.0.1:1"},
)
TEMPLATES = sorted(
    {r.template.source for r in compile_routes([*discover_services(), MESSAGING])}
    | {"/**", "/v1/**", "/{x=**}", "/v1/{x=a/**}:go", "/v1/{a}/{b=c/*/d}/e:verb", "/v1/*/x/**:v"}
)
SEGMENTS = st.sampled_from(
    [
        *("v1", "sessions", "facts", "messages", "blobs", "a", "c", "d", "e", "x", "", "abc:go", "::go"),
        *("%2F", "%41", "s%3Ax", "sessi%6Fns", "%76%31", "a%2fb", "%", "%zz", "\u00e9", "n%C3%A9"),
    ]
)
VERBS = st.sampled_from(["", ":go", ":verb", ":undelete", ":resolve", ":cancel", ":g%6F", ":x%3A", ":"])


@settings(max_examples=400, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    segments=st.lists(SEGMENTS, max_size=6),
    verb=VERBS,
    slash=st.booleans(),
)
def test_a_template_matches_as_decoding_segment_by_segment_does(
    template: str, segments: list[str], verb: str, slash: bool
) -> None:
    parsed = parse(template)
    path = ("/" if slash else "") + "/".join(segments) + verb
    assert parsed.match(path) == parsed.match_decoding(path)


def test_every_route_matches_its_own_example_path() -> None:
    # (The property above is mostly about paths that do not match; these all do.)
    for route in compile_routes([*discover_services(), MESSAGING]):
        path = "/" + "/".join(
            (p.text if p.kind == "literal" else "x1" if p.kind == "*" else "y/z")
            for p in route.template.parts
        )
        path += f":{route.template.verb}" if route.template.verb else ""
        values = route.template.match(path)
        assert values is not None and values == route.template.match_decoding(path), path


def _reading(gateway: Gateway, method: str, path: str, every: bool) -> object:
    """The route and values a path is matched to, or the refusal (status, message, Allow)."""
    try:
        route, values = (gateway.match_every_template if every else gateway._match)(method, path)
    except HttpError as error:
        return error.http, error.status.message, error.headers
    return route.method.full_name, route.template.source, values


@settings(max_examples=600, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    segments=st.lists(SEGMENTS, max_size=6),
    verb=VERBS,
)
def test_the_gateway_matches_a_path_as_trying_every_template_does(
    method: str, segments: list[str], verb: str
) -> None:
    path = "/" + "/".join(segments) + verb
    assert _reading(GATEWAY, method, path, every=False) == _reading(GATEWAY, method, path, every=True)


def test_every_route_is_matched_to_its_own_example_path_as_trying_every_template_does() -> None:
    for route in GATEWAY.routes:
        path = "/" + "/".join(
            (p.text if p.kind == "literal" else "x1" if p.kind == "*" else "y/z")
            for p in route.template.parts
        )
        path += f":{route.template.verb}" if route.template.verb else ""
        for method in ("GET", "POST", "PATCH", "DELETE"):
            fast, every = _reading(GATEWAY, method, path, False), _reading(GATEWAY, method, path, True)
            assert fast == every, (method, path)


# --------------------------------------------------------------- JSON writers


def _fill(message: Message, depth: int = 0) -> Message:
    """Every field of ``message`` set (two of each repeated, maps of two), to depth 3."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = getattr(message, field.name)
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for n in range(2):
                key = _scalar(key_field, n)
                if value_field.message_type is not None:
                    if depth < 3:
                        _fill_message(entries[key], depth + 1)
                else:
                    entries[key] = _scalar(value_field, n)
            continue
        if field.is_repeated:
            for n in range(2):
                if field.message_type is not None:
                    if depth < 3:
                        _fill_message(getattr(message, field.name).add(), depth + 1)
                else:
                    getattr(message, field.name).append(_scalar(field, n))
            continue
        if field.message_type is not None:
            if depth < 3:
                _fill_message(getattr(message, field.name), depth + 1)
            continue
        setattr(message, field.name, _scalar(field, 1))
    return message


def _fill_message(message: Message, depth: int) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.seconds, message.nanos = 1_700_000_123, 120_000_000  # type: ignore[attr-defined]
    elif name == "google.protobuf.Duration":
        message.seconds, message.nanos = -3, -5_000  # type: ignore[attr-defined]
    elif name == "google.protobuf.FieldMask":
        message.paths.extend(["ticket_ref", "lane_items.state"])  # type: ignore[attr-defined]
    elif name == "google.protobuf.Struct":
        message.update({"a": 1, "b": [True, None, "x"], "c": {"d": 2.5}})  # type: ignore[attr-defined]
    elif name == "google.protobuf.Value":
        message.string_value = "v"  # type: ignore[attr-defined]
    elif name == "google.protobuf.ListValue":
        message.extend([1, "two"])  # type: ignore[attr-defined]
    elif name == "google.protobuf.Any":
        message.Pack(timestamp_pb2.Timestamp(seconds=5))  # type: ignore[attr-defined]
    else:
        _fill(message, depth)


def _scalar(field: Any, n: int) -> Any:  # a FieldDescriptor (upb's at run time)
    if field.type == FD.TYPE_ENUM:
        assert field.enum_type is not None
        values = field.enum_type.values
        return values[n % len(values)].number if n < len(values) else 77  # an unknown number too
    if field.type == FD.TYPE_STRING:
        return f"h\u00e9llo {n} \u2028 </script>"
    if field.type == FD.TYPE_BYTES:
        return bytes([0, 255, n])
    if field.type == FD.TYPE_BOOL:
        return n % 2 == 1
    if field.cpp_type == FD.CPPTYPE_FLOAT:
        return 0.1 + n
    if field.cpp_type == FD.CPPTYPE_DOUBLE:
        return 1.5e300 + n
    if field.cpp_type in (FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        return 2**53 + 1 + n
    if field.cpp_type == FD.CPPTYPE_INT32:
        return -7 - n
    return 7 + n


def _served_messages() -> list[descriptor.Descriptor]:
    """Every message type a served route can answer with, nested ones included."""
    seen: dict[str, descriptor.Descriptor] = {}
    todo = [r.method.output_type for r in compile_routes([*discover_services(), MESSAGING])]
    while todo:
        message = todo.pop()
        if message.full_name in seen:
            continue
        seen[message.full_name] = message
        todo += [f.message_type for f in message.fields if f.message_type is not None]
    return sorted(seen.values(), key=lambda m: m.full_name)


def _reference(message: Message) -> Any:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


@pytest.mark.parametrize("message_type", _served_messages(), ids=lambda m: m.full_name)
def test_the_compiled_writer_writes_as_json_format(message_type: descriptor.Descriptor) -> None:
    cls = message_factory.GetMessageClass(message_type)
    empty = cls()
    assert protojson.to_json_object(empty) == _reference(empty)
    if message_type.full_name.startswith("google.protobuf."):
        return  # written whole by their own writers, filled by _fill_message above
    full = _fill(cls())
    written = protojson.to_json_object(full)
    assert written == _reference(full)
    # What the client receives: the same JSON text, once encoded.
    assert json.loads(json.dumps(written)) == json.loads(
        json_format.MessageToJson(full, always_print_fields_with_no_presence=True)
    )


def test_special_floats_and_timestamps_are_written_as_json_format_does() -> None:
    from conformance.v1 import messaging_pb2

    cls = message_factory.GetMessageClass(messaging_pb2.DESCRIPTOR.message_types_by_name["SearchRequest"])
    for value in (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-320):
        message = cls(score=value)
        written = json.dumps(protojson.to_json_object(message), sort_keys=True)  # (keys in field order)
        assert written == json.dumps(_reference(message), sort_keys=True)
    stamp = timestamp_pb2.Timestamp()
    for seconds, nanos in [(0, 0), (-1, 999_999_999), (-62_135_596_800, 0), (253_402_300_799, 1_000), (1, 1)]:
        stamp.seconds, stamp.nanos = seconds, nanos
        assert protojson._timestamp(stamp) == stamp.ToJsonString()
    stamp.seconds = 253_402_300_800  # out of range: the same error
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        stamp.ToJsonString()
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        protojson._timestamp(stamp)


def test_an_any_is_written_by_json_format() -> None:
    packed = any_pb2.Any()
    packed.Pack(timestamp_pb2.Timestamp(seconds=5))
    assert protojson.to_json_object(packed) == _reference(packed)
    assert protojson.to_json_object(timestamp_pb2.Timestamp(seconds=5)) == "1970-01-01T00:00:05Z"


# ------------------------------------------------------------- JSON readers


def _body_type(route: Route) -> descriptor.Descriptor | None:
    """The message a route's body is read into (None: no body, or a scalar one)."""
    if route.body == "*":
        return route.method.input_type
    return route.method.input_type.fields_by_name[route.body].message_type if route.body else None


BODY_TYPES = sorted(
    {t for r in compile_routes([*discover_services(), MESSAGING]) if (t := _body_type(r)) is not None},
    key=lambda d: d.full_name,
)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(["\ud800", "12", "1.5", " 3", "true", "2026-01-02T03:04:05Z", "a,b"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "text", "name"]), st.text(max_size=3), max_size=2),
)


def _objects(message: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects for ``message``: mostly its own fields (either spelling) with
    values of their kind, and now and then a wrong value, key or spelling twice."""
    fields = []
    for field in message.fields:
        plausible: st.SearchStrategy[Any]
        if field.message_type is not None and not field.is_repeated and depth < 2:
            plausible = _objects(field.message_type, depth + 1)
        elif field.enum_type is not None:
            plausible = st.sampled_from([v.name for v in field.enum_type.values])
        elif field.type == FD.TYPE_STRING:
            plausible = st.text(max_size=8)
        elif field.type == FD.TYPE_BOOL:
            plausible = st.booleans()
        elif field.cpp_type in (FD.CPPTYPE_INT32, FD.CPPTYPE_UINT32):
            plausible = st.integers(min_value=-(2**31), max_value=2**32)
        else:
            plausible = ODD_VALUES
        key = st.sampled_from([field.name, field.json_name])
        fields.append(st.tuples(key, st.one_of(plausible, plausible, plausible, ODD_VALUES)))
    pair = st.one_of(*fields, st.tuples(st.just("unknownField"), ODD_VALUES))
    return st.lists(pair, max_size=5).map(dict)


def _parsed(parse: Any, message_type: descriptor.Descriptor, obj: dict[str, Any]) -> tuple[str, Any]:
    message = message_factory.GetMessageClass(message_type)()
    try:
        parse(obj, message)
    except json_format.ParseError as error:
        return "refused", str(error)
    except Exception as error:  # e.g. upb's SystemError for a lone surrogate as an enum name
        return "raised", f"{type(error).__name__}: {error}"
    return "read", message.SerializeToString(deterministic=True)


@pytest.mark.parametrize("message_type", BODY_TYPES, ids=lambda d: d.full_name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_compiled_reader_reads_as_json_format(
    message_type: descriptor.Descriptor, data: st.DataObject
) -> None:
    obj = data.draw(_objects(message_type))
    fast = _parsed(protojson.parse_dict, message_type, obj)
    assert fast == _parsed(json_format.ParseDict, message_type, obj), obj


def test_the_compiled_reader_reads_a_plain_object_itself() -> None:
    """(So the property above compares the compiled reader, not the fallback, for such objects.)"""
    from flowpilot.sessions.v1 import sessions_pb2

    request = sessions_pb2.CreateFactRequest()
    assert protojson._read_plain({"fact": {"text": "x", "source": "FACT_SOURCE_USER"}}, request)
    assert request.fact.text == "x" and request.fact.source == sessions_pb2.FACT_SOURCE_USER


# ------------------------------------------------ with and without recorded spans


@pytest.fixture(scope="module")
async def bases(echo: str) -> AsyncIterator[tuple[str, str]]:
    config: dict[str, Any] = {
        "backends": {"conformance.v1": echo},
        "services": [MESSAGING],
        "max_body_bytes": 2048,
        "cors_origins": ["https://app.example"],
        "response_metadata": ["x-served-by"],
    }
    async with serve_gateway(traced=True, **config) as traced, serve_gateway(traced=False, **config) as lean:
        yield traced, lean


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/messages/123", {}),
    ("GET", "/v1/messages/a%2Fb%20c", {}),
    ("GET", "/v1/bkt/blobs/dir/sub%2Fdir/file%20name.txt", {}),
    ("GET", "/v1/messagesById/42?revision=2&sub.subfield=foo", {}),
    ("GET", "/v1/search?query=a+b&tags=x&tags=y&color=COLOR_RED&after=2026-01-02T03:04:05Z&within=1.5s", {}),
    ("GET", "/v1/messages/77/text", {}),
    ("GET", "/v1/messages/headers/text", {"headers": {"Accept-Language": "nl", "Cookie": "c=1"}}),
    ("POST", "/v1/messages", {"json": {"text": "new"}}),
    ("POST", "/v1/messages", {"json": {"text": "replayed"}}),
    ("DELETE", "/v1/messages/5", {}),
    ("PATCH", "/v1/messages/1", {"json": {"text": "Hi!"}}),
    ("PATCH", "/v1/shelves/s1/books/b1", {"json": {"name": "shelves/s1/books/b2"}}),
    ("POST", "/v1/messages/9:cancel", {"json": {"reason": "dup"}}),
    ("GET", "/v1/messages/9:cancel", {}),
    ("HEAD", "/v1/probe/x", {}),
    ("GET", "/v2/nothing/here", {}),
    ("POST", "/v1/messages/1", {"json": {}}),
    ("TRACE", "/v1/messages/1", {}),
    ("POST", "/healthz", {}),
    ("GET", "/v1/messages/1?nope=1", {}),
    ("PUT", "/v1/messages/1", {"content": b'{"text": "x",}'}),
    ("PUT", "/v1/messages/1", {"json": {"nope": 1}}),
    ("PUT", "/v1/messages/1", {"json": {"text": "x" * 4000}}),
    ("PUT", "/v1/messages/1", {"content": b"[" * 100 + b"]" * 100}),
    ("GET", "/v1/search?pageSize=99999999999", {}),
    ("GET", "/v1/messages/1", {"content": b'{"x": 1}'}),
    ("GET", "/v1/messages/1", {"headers": {"Grpc-Timeout": "soon"}}),
    ("GET", "/v1/messages/slow", {"headers": {"Grpc-Timeout": "100m"}}),
    ("GET", "/v1/messages/missing", {}),
    ("GET", "/v1/messages/1", {"headers": {"Authorization": ""}}),
    ("GET", "/v1/messages/1", {"headers": {"Accept-Language": "fr\x7f"}}),
    ("GET", "/v1/messages/1", {"headers": {"X-Request-Id": "a" * 200}}),
    ("GET", "/v1/messages/1", {"headers": {"Origin": "https://app.example"}}),
    (
        "OPTIONS",
        "/v1/messages/1",
        {"headers": {"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"}},
    ),
    ("OPTIONS", "/v1/messages/1", {}),
    ("GET", "/healthz", {}),
]
COMPARED_HEADERS = (
    "content-type", "content-length", "allow", "www-authenticate", "location", "retry-after", "x-served-by",
    "access-control-allow-origin", "access-control-allow-methods", "access-control-expose-headers", "vary",
)  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES, ids=[f"{m} {p}"[:60] for m, p, _ in CASES])
async def test_without_recorded_spans_the_answer_is_the_same(
    bases: tuple[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    answers = await _answers(bases, method, path, kwargs)
    assert answers[0] == answers[1]


@pytest.fixture(scope="module")
async def parsers(echo: str) -> AsyncIterator[tuple[str, str]]:
    """The gateway as served (llhttp when httptools is installed) and with h11 alone."""
    config: dict[str, Any] = {
        "backends": {"conformance.v1": echo},
        "services": [MESSAGING],
        "max_body_bytes": 2048,
        "cors_origins": ["https://app.example"],
        "response_metadata": ["x-served-by"],
    }
    async with serve_gateway(**config) as served, serve_gateway(protocol=H11Protocol, **config) as h11:
        yield served, h11


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES, ids=[f"{m} {p}"[:60] for m, p, _ in CASES])
async def test_whichever_parser_reads_the_request_the_answer_is_the_same(
    parsers: tuple[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    answers = await _answers(parsers, method, path, kwargs)
    assert answers[0] == answers[1]


async def _answers(
    bases: tuple[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Status, body, the compared headers, and whether the request id came back, from each base."""
    answers = []
    for base in bases:
        request_id = str(uuid.uuid4())
        headers = {**AUTH, "X-Request-Id": request_id, **kwargs.get("headers", {})}
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            response = await client.request(
                method, path, headers=headers, **{k: v for k, v in kwargs.items() if k != "headers"}
            )
        body = response.content.replace(request_id.encode(), b"<request id>")
        answers.append(
            (
                response.status_code,
                json.loads(body)
                if body and response.headers.get("content-type") == "application/json"
                else body,
                {h: response.headers.get(h) for h in COMPARED_HEADERS},
                response.headers.get("x-request-id") in (request_id, None),
            )
        )
    return answers


async def test_without_recorded_spans_the_trace_still_reaches_the_service(bases: tuple[str, str]) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    for base in bases:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            response = await client.get("/v1/messages/trace", headers={**AUTH, "traceparent": parent})
            started = await client.get("/v1/messages/trace", headers=AUTH)
        seen = response.json()["text"]
        assert seen.split("-")[1] == trace_id, (base, seen)  # the caller's trace, continued
        assert seen != parent  # under a span of the gateway's own
        assert len(started.json()["text"].split("-")[1]) == 32  # no caller trace: one is started
