"""The gateway against careless and hostile clients: headers gRPC cannot
carry, oversize headers, deeply nested JSON, custom methods called with the
wrong verb, backends that hang, and what a create answers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.core.auth import Role
from tests.gateway.harness import MESSAGING, serve_gateway
from tests.support import Keys

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture(scope="module")
async def base(echo: str) -> AsyncIterator[str]:
    async with serve_gateway(backends={"conformance.v1": echo}, services=[MESSAGING]) as url:
        yield url


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        yield client


def _status(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The reason and field violations of a google.rpc.Status body."""
    assert response.headers["content-type"] == "application/json", response.text
    reason, violations = "", {}
    for detail in response.json()["details"]:
        if detail["@type"].endswith("ErrorInfo"):
            reason = detail["reason"]
        if detail["@type"].endswith("BadRequest"):
            violations = {v["field"]: v["description"] for v in detail["fieldViolations"]}
    return reason, violations


async def test_headers_grpc_metadata_cannot_carry_are_400_at_once(http: httpx.AsyncClient) -> None:
    cases: list[tuple[str, list[tuple[bytes, bytes]]]] = [
        ("X-Request-Id", [(b"Authorization", b"Bearer x"), (b"X-Request-Id", b"\xe9")]),
        ("X-Request-Id", [(b"Authorization", b"Bearer x"), (b"X-Request-Id", b"a b")]),
        ("X-Request-Id", [(b"Authorization", b"Bearer x"), (b"X-Request-Id", b"<script>")]),
        ("Authorization", [(b"Authorization", b"Bearer x\x01y")]),
        ("Authorization", [(b"Authorization", b"Bearer \xc3\xa9")]),
        ("Authorization", [(b"Authorization", b"Bearer x\ty")]),
        ("Accept-Language", [(b"Authorization", b"Bearer x"), (b"Accept-Language", b"fr\x7f")]),
        ("Accept-Language", [(b"Authorization", b"Bearer x"), (b"Accept-Language", b"\xe9n")]),
    ]
    for header, headers in cases:
        started = time.monotonic()
        response = await http.get("/v1/messages/1", headers=headers)
        assert time.monotonic() - started < 2, header
        assert response.status_code == 400, (header, response.text)
        reason, violations = _status(response)
        assert reason == "INVALID_HEADER" and header in violations, (header, response.text)
        echoed = response.headers.get("x-request-id", "")
        assert echoed != dict(headers).get(b"X-Request-Id", b"").decode("latin-1")  # never echoed raw


async def test_oversize_headers_are_431(http: httpx.AsyncClient) -> None:
    cases = {
        "Authorization": {"Authorization": "Bearer " + "x" * 17_000},
        "X-Request-Id": {**AUTH, "X-Request-Id": "a" * 9_000},
        "Accept-Language": {**AUTH, "Accept-Language": "en," * 400},
        "(all headers)": {**AUTH, **{f"X-Extra-{i}": "v" * 4000 for i in range(9)}},
    }
    for header, headers in cases.items():
        response = await http.get("/v1/messages/1", headers=headers)
        assert response.status_code == 431, (header, response.status_code, response.text[:200])
        reason, violations = _status(response)
        assert reason == "HEADER_TOO_LARGE" and header in violations, header
        assert "aaaa" not in response.headers.get("x-request-id", "")


async def test_request_ids_within_the_rules_are_kept_and_others_made(http: httpx.AsyncClient) -> None:
    given = "req-1.2:3_" + "x" * 118  # 128 characters, the longest accepted
    response = await http.get("/v1/messages/1", headers={**AUTH, "X-Request-Id": given})
    assert response.status_code == 200 and response.headers["x-request-id"] == given
    made = (await http.get("/v1/messages/1", headers=AUTH)).headers["x-request-id"]
    assert uuid.UUID(made)


async def test_deeply_nested_json_is_400(http: httpx.AsyncClient) -> None:
    deep = b"[" * 100 + b"]" * 100
    for body in (b"[" * 2000, deep, b'{"text": "x", "sub": ' + deep + b"}", b'{"a":' * 5000):
        response = await http.post("/v1/messages", headers=AUTH, content=body)
        assert response.status_code == 400, (body[:20], response.text)
        assert _status(response)[0] == "BODY_TOO_DEEP", response.text
    # Brackets inside strings are text, not nesting (a PowerShell script is full of them).
    script = await http.post("/v1/messages", headers=AUTH, json={"text": "[{" * 500 + '\\"' + "}]" * 500})
    assert script.status_code == 201, script.text
    nested: Any = "leaf"
    for _ in range(60):  # within the documented depth (64)
        nested = {"a": nested}
    within = await http.post("/v1/messages", headers=AUTH, content=json.dumps({"text": "x", "x": nested}))
    assert within.status_code == 400 and _status(within)[0] == "INVALID_BODY"  # an unknown field, not depth


async def test_the_wrong_verb_on_a_custom_method_is_405_with_allow(http: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE", "PATCH"):
        response = await http.request(method, "/v1/messages/7:cancel", headers=AUTH)
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "POST"
        assert _status(response)[0] == "METHOD_NOT_ALLOWED"
    # The right verb still reaches it, and a plain GET of the resource still works.
    assert (await http.post("/v1/messages/7:cancel", headers=AUTH, json={})).status_code == 200
    assert (await http.get("/v1/messages/7", headers=AUTH)).status_code == 200


async def test_a_backend_that_hangs_is_504_within_the_deadline(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await http.get("/v1/messages/slow", headers={**AUTH, "Grpc-Timeout": "300m"})
    assert response.status_code == 504 and time.monotonic() - started < 1.5
    assert response.json()["code"] == 4  # DEADLINE_EXCEEDED


async def test_a_backend_that_never_speaks_is_504_within_the_deadline() -> None:
    # A peer that accepts connections and never answers (not even HTTP/2's preface).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        async with (
            serve_gateway(
                backends={"conformance.v1": address}, services=[MESSAGING], default_timeout_seconds=1
            ) as url,
            httpx.AsyncClient(base_url=url, timeout=5) as client,
        ):
            started = time.monotonic()
            response = await client.get("/v1/messages/1", headers=AUTH)
            assert response.status_code == 504, response.text
            assert time.monotonic() - started < 2
    finally:
        silent.close()


async def test_create_is_201_with_location_only_when_something_was_created(
    gateway_url: str, keys: Keys
) -> None:
    account = uuid.uuid4()
    token = keys.token(account_id=account, role=Role.TEAM_ADMIN)
    async with httpx.AsyncClient(
        base_url=gateway_url, timeout=20, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        body = {"ticketRef": "CW #77", "ticketKind": "TICKET_KIND_PSA", "title": "VPN drops"}
        request_id = str(uuid.uuid4())
        first = await client.post("/v1/sessions", json=body, params={"requestId": request_id})
        assert first.status_code == 201, first.text
        name = first.json()["session"]["name"]
        assert first.headers["location"] == f"/v1/{name}"
        assert (await client.get(first.headers["location"])).json()["name"] == name
        replayed = await client.post("/v1/sessions", json=body, params={"requestId": request_id})
        resumed = await client.post("/v1/sessions", json=body)
        for response in (replayed, resumed):
            assert response.status_code == 200 and "location" not in response.headers, response.text
            assert response.json()["session"]["name"] == name
        assert resumed.json()["resumed"] is True

        fact = await client.post(
            f"/v1/{name}/facts", json={"text": "MFA lists the old phone", "source": "FACT_SOURCE_USER"}
        )
        assert fact.status_code == 201 and fact.headers["location"] == f"/v1/{fact.json()['name']}"

        walk = {"ticketRef": "CW #78", "ticketKind": "TICKET_KIND_PSA", "kind": "WALK_KIND_ADHOC"}
        started = await client.post("/v1/walks", json=walk)
        assert started.status_code == 201, started.text
        walk_name = started.json()["walk"]["name"]
        assert started.headers["location"] == f"/v1/{walk_name}"
        again = await client.post("/v1/walks", json=walk)
        assert again.status_code == 200 and again.json()["walk"]["name"] == walk_name

        draft = {"scriptBody": "Restart-Service Spooler", "language": "LANGUAGE_POWERSHELL"}
        retry = {"requestId": str(uuid.uuid4())}
        made = await client.post("/v1/draftTemplates", json=draft, params=retry)
        assert made.status_code == 201 and made.headers["location"] == f"/v1/{made.json()['name']}"
        repeated = await client.post("/v1/draftTemplates", json=draft, params=retry)
        assert repeated.status_code == 200 and repeated.json()["name"] == made.json()["name"]


async def test_internal_methods_are_not_served_over_http(gateway_url: str, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as client:
        token = keys.token(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)
        response = await client.post(
            "/v1/draftTemplates:importSessionScripts",
            headers={"Authorization": f"Bearer {token}"},
            json={"session": f"sessions/{uuid.uuid4()}", "resolvedBy": str(uuid.uuid4())},
        )
        assert response.status_code in (404, 405), response.text
        document = (await client.get("/openapi.json")).json()
        assert not any("importSessionScripts" in path for path in document["paths"])


async def test_many_bad_header_requests_leave_no_connection_waiting(base: str) -> None:
    async def one(client: httpx.AsyncClient) -> int:
        response = await client.get(
            "/v1/messages/1", headers=[(b"Authorization", b"Bearer x"), (b"X-Request-Id", b"\xe9")]
        )
        return response.status_code

    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        codes = await asyncio.gather(*(one(client) for _ in range(200)))
    assert set(codes) == {400}


async def test_text_ids_and_etags_no_service_accepts_are_400_over_http(gateway_url: str, keys: Keys) -> None:
    token = keys.token(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN)
    async with httpx.AsyncClient(
        base_url=gateway_url, timeout=20, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        nul = await client.post(
            "/v1/sessions", json={"ticketRef": "CW #1", "ticketKind": "TICKET_KIND_PSA", "title": "a\u0000b"}
        )
        assert nul.status_code == 400 and "session.title" in _status(nul)[1], nul.text
        assert (await client.get("/v1/sessions", params={"ticketRef": "\u0000"})).status_code == 400
        etag = await client.patch("/v1/settings/notes.format", json={"value": "html", "etag": "²"})
        assert etag.status_code == 400 and "setting.etag" in _status(etag)[1], etag.text
        alias = await client.get(f"/v1/sessions/{uuid.uuid4().hex}")
        assert alias.status_code == 400, alias.text
        token_page = await client.get("/v1/sessions", params={"pageToken": "abc"})
        assert token_page.status_code == 400 and _status(token_page)[0] == "INVALID_PAGE_TOKEN"
        assert (await client.get("/v1/settings/notes.format")).json()["value"] == "markdown"  # unchanged
