"""Every HttpRule example of google/api/http.proto's documentation, and every
strictness rule of the gateway, against an echo service of our own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.gateway.harness import MESSAGING, serve_gateway

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture(scope="module")
async def base(echo: str) -> AsyncIterator[str]:
    async with serve_gateway(
        backends={"conformance.v1": echo},
        services=[MESSAGING],
        max_body_bytes=2048,
        cors_origins=["https://app.example"],
        response_metadata=["x-served-by"],
    ) as url:
        yield url


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        yield client


def _echo(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    assert response.status_code in (200, 201), response.text
    body = response.json()
    return body["method"], body["request"]


async def test_get_with_name_template(http: httpx.AsyncClient) -> None:
    assert _echo(await http.get("/v1/messages/123456")) == ("GetMessage", {"name": "messages/123456"})


async def test_query_parameters_and_nested_fields(http: httpx.AsyncClient) -> None:
    method, request = _echo(await http.get("/v1/messagesById/123456?revision=2&sub.subfield=foo"))
    assert method == "GetMessageById"
    assert request == {"message_id": "123456", "revision": "2", "sub": {"subfield": "foo"}}


async def test_additional_bindings(http: httpx.AsyncClient) -> None:
    method, request = _echo(await http.get("/v1/users/me/messages/123456"))
    assert (method, request) == ("GetMessageById", {"user_id": "me", "message_id": "123456"})


async def test_body_field_and_patch_fills_update_mask(http: httpx.AsyncClient) -> None:
    method, request = _echo(await http.patch("/v1/messages/123456", json={"text": "Hi!"}))
    assert method == "UpdateMessage"
    assert request == {"message_id": "123456", "message": {"text": "Hi!"}, "update_mask": "text"}
    # An explicit mask wins.
    _, explicit = _echo(await http.patch("/v1/messages/1?update_mask=text,sub", json={"text": "x"}))
    assert explicit["update_mask"] == "text,sub"


async def test_body_star(http: httpx.AsyncClient) -> None:
    method, request = _echo(await http.put("/v1/messages/123456", json={"text": "Hi!"}))
    assert (method, request) == ("UpdateMessageFull", {"message_id": "123456", "text": "Hi!"})


async def test_nested_path_variable_inside_the_body_resource(http: httpx.AsyncClient) -> None:
    method, request = _echo(
        await http.patch("/v1/shelves/s1/books/b1", json={"title": "New", "sub": {"subfield": "y"}})
    )
    assert method == "UpdateResource"
    assert request["resource"] == {"name": "shelves/s1/books/b1", "title": "New", "sub": {"subfield": "y"}}
    assert request["update_mask"] == "title,sub.subfield"
    # The same name in the body is fine; another one collides.
    ok = await http.patch("/v1/shelves/s1/books/b1", json={"name": "shelves/s1/books/b1", "title": "x"})
    assert ok.status_code == 200
    clash = await http.patch("/v1/shelves/s1/books/b1", json={"name": "shelves/s1/books/b2"})
    assert clash.status_code == 400 and clash.json()["details"][0]["reason"] == "PATH_BODY_CONFLICT"


async def test_custom_verb(http: httpx.AsyncClient) -> None:
    method, request = _echo(await http.post("/v1/messages/9:cancel", json={"reason": "dup"}))
    assert (method, request) == ("CancelMessage", {"name": "messages/9", "reason": "dup"})


async def test_percent_decoding(http: httpx.AsyncClient) -> None:
    # One-segment variable: fully decoded.
    _, single = _echo(await http.get("/v1/messagesById/a%2Fb%20c"))
    assert single["message_id"] == "a/b c"
    # Multi-segment variables keep %2F.
    _, multi = _echo(await http.get("/v1/messages/a%2Fb%20c"))
    assert multi == {"name": "messages/a%2Fb c"}
    _, blob = _echo(await http.get("/v1/bkt/blobs/dir/sub%2Fdir/file%20name.txt"))
    assert blob == {"bucket": "bkt", "path": "dir/sub%2Fdir/file name.txt"}


async def test_response_body(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/messages/77/text")
    assert response.status_code == 200 and response.json() == "messages/77"


async def test_create_is_201_and_empty_is_204(http: httpx.AsyncClient) -> None:
    created = await http.post("/v1/messages", json={"text": "new"})
    assert created.status_code == 201 and created.json()["request"] == {"message": {"text": "new"}}
    assert created.headers["location"] == "/v1/messages/new-1"
    # The service created nothing (a replay, a resumed resource): 200, no Location.
    replayed = await http.post("/v1/messages", json={"text": "replayed"})
    assert replayed.status_code == 200 and "location" not in replayed.headers
    deleted = await http.delete("/v1/messages/5")
    assert deleted.status_code == 204 and deleted.content == b""


async def test_query_string_typing(http: httpx.AsyncClient) -> None:
    query = (
        "query=hello+world&tags=a&tags=b&color=COLOR_RED&colors=1&colors=COLOR_GREEN"
        "&after=2026-01-02T03:04:05Z&readMask=a,b.c&within=1.5s&big=9007199254740993&exact=true"
        "&score=0.5&sub.subfield=x&limit=7&pageSize=5"
    )
    method, request = _echo(await http.get(f"/v1/search?{query}"))
    assert method == "Search"
    assert request == {
        "query": "hello world",
        "tags": ["a", "b"],
        "color": "COLOR_RED",
        "colors": ["COLOR_RED", "COLOR_GREEN"],
        "after": "2026-01-02T03:04:05Z",
        "read_mask": "a,b.c",
        "within": "1.500s",
        "big": "9007199254740993",
        "exact": True,
        "score": 0.5,
        "sub": {"subfield": "x"},
        "limit": 7,
        "page_size": 5,
    }


async def test_custom_method_kind(http: httpx.AsyncClient) -> None:
    response = await http.head("/v1/probe/x")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason"),
    [
        ("GET", "/v2/nothing/here", {}, 404, "NO_ROUTE"),
        ("POST", "/v1/messages/1", {"json": {}}, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/messages/1?nope=1", {}, 400, "UNKNOWN_PARAMETER"),
        ("GET", "/v1/messages/1?sub.nope=1", {}, 400, "UNKNOWN_PARAMETER"),
        ("PUT", "/v1/messages/1?text=x", {"json": {}}, 400, "UNKNOWN_PARAMETER"),
        ("GET", "/v1/messages/1?message_id=2", {}, 400, "UNKNOWN_PARAMETER"),
        ("PUT", "/v1/messages/1", {"json": {"messageId": "2"}}, 400, "PATH_BODY_CONFLICT"),
        ("PUT", "/v1/messages/1", {"content": b'{"text": "x",}'}, 400, "MALFORMED_JSON"),
        ("PUT", "/v1/messages/1", {"content": b"[1, 2]"}, 400, "MALFORMED_JSON"),
        # A lone surrogate escape is no text (protobuf failed on it: a 500).
        ("PUT", "/v1/messages/1", {"content": b'{"text": "\\ud800"}'}, 400, "MALFORMED_JSON"),
        ("PUT", "/v1/messages/1", {"content": b'{"\\udc00": 1}'}, 400, "MALFORMED_JSON"),
        ("PUT", "/v1/messages/1", {"json": {"nope": 1}}, 400, "INVALID_BODY"),
        ("PUT", "/v1/messages/1", {"json": {"text": "x" * 4000}}, 413, "BODY_TOO_LARGE"),
        ("GET", "/v1/search?color=PURPLE", {}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/search?big=12x", {}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/search?pageSize=99999999999", {}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/search?exact=maybe", {}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/search?after=yesterday", {}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/messages/1", {"content": b'{"x": 1}'}, 400, "INVALID_REQUEST"),
        ("GET", "/v1/messages/1", {"headers": {"Grpc-Timeout": "soon"}}, 400, "INVALID_REQUEST"),
    ],
)
async def test_strictness(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int, reason: str
) -> None:
    response = await http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    info = body["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == reason and info["domain"] == "gateway.flowpilot.internal"
    if status == 405:
        assert response.headers["allow"] == "DELETE, GET, PATCH, PUT"
    if status == 400 and reason in ("UNKNOWN_PARAMETER", "INVALID_REQUEST") and "?" in path:
        assert body["details"][1]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


async def test_missing_token_is_401_before_any_backend_call(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/v1/messages/1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == 16


async def test_backend_errors_keep_their_status(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/messages/missing")
    assert response.status_code == 404
    assert response.json()["code"] == 5 and "not found" in response.json()["message"]


async def test_request_id_is_forwarded_and_returned(http: httpx.AsyncClient) -> None:
    given = await http.get("/v1/messages/1/text", headers={"X-Request-Id": "req-42"})
    assert given.headers["x-request-id"] == "req-42"
    generated = await http.post("/v1/messages", json={})
    assert len(generated.headers["x-request-id"]) == 36
    # The service saw the same id (the echo puts it in `text` when there is no name).
    echoed = await http.get("/v1/search", headers={"X-Request-Id": "req-43"})
    assert echoed.json()["text"] == "req-43"


async def test_timeout_header_becomes_the_deadline(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/messages/slow", headers={"Grpc-Timeout": "200m"})
    assert response.status_code == 504
    assert response.json()["code"] == 4


async def test_backend_down_is_503_not_a_hang() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    async with (
        serve_gateway(backends={"conformance.v1": dead}, services=[MESSAGING]) as url,
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client,
    ):
        response = await client.get("/v1/messages/1")
        assert response.status_code == 503
        assert response.json()["code"] == 14
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["backends"]["conformance.v1"] != "SERVING"


async def test_cors_preflight_is_answered_before_routing(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        allowed = await client.options(
            "/v1/messages/1",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await client.options(
            "/v1/messages/1",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in refused.headers
        simple = await client.get("/v1/messages/1", headers={"Origin": "https://app.example", **AUTH})
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"]


async def test_health_endpoints(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    # The echo server has no health service: not ready, and it says which backend.
    assert ready.status_code == 503 and ready.json()["backends"] == {"conformance.v1": "UNIMPLEMENTED"}


async def test_only_allowed_headers_reach_the_service(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/v1/messages/headers/text",
        headers={
            "Accept-Language": "nl-NL",
            "X-Internal-Secret": "s3cret",
            "Cookie": "session=abc",
            "X-Request-Id": "r-1",
        },
    )
    seen = json.loads(response.json())
    assert seen["accept-language"] == "nl-NL"
    assert seen["authorization"] == "Bearer test-token"  # forwarded unchanged
    assert seen["x-request-id"] == "r-1"
    assert "x-internal-secret" not in seen and "cookie" not in seen
    # Only allow-listed response metadata comes back as headers.
    assert response.headers["x-served-by"] == "echo"
    assert "x-internal-host" not in response.headers
