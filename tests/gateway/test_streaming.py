"""Server streaming through the gateway, consumed by a real HTTP client
(httpx, streaming): StreamMessage of the real sessions service as NDJSON and
as Server-Sent Events; refusals before the first message as the usual JSON
errors; a client going away mid-stream (the service stores the partial
reply); a failure and the deadline mid-stream as the last line; the OpenAPI
operation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from flowpilot.sessions.v1 import sessions_pb2

from gateway.streaming import wants_sse
from services.core.ai import AI
from tests.gateway.harness import serve_gateway
from tests.gateway.test_end_to_end import Ui
from tests.sessions.helpers import sessions_with
from tests.sessions.test_copilot_stream import SlowBackend
from tests.support import Keys, RunDatabase, until

SESSIONS = sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"]


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as c:
        yield c


async def new_session(ui: Ui) -> str:
    created = await ui.request(
        "POST",
        "/v1/sessions",
        json={
            "ticketRef": f"CW #{uuid.uuid4().int % 10**6}",
            "ticketKind": "TICKET_KIND_PSA",
            "title": "VPN",
        },
    )
    assert created.status_code == 201, created.text
    name: str = created.json()["session"]["name"]
    return name


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event, data) of each event of a text/event-stream body."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_stream_is_ndjson_by_default(client: httpx.AsyncClient, keys: Keys) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    lines = []
    async with client.stream(
        "POST",
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "remember: it started Monday"}},
        headers={**ui.headers(), "X-Request-Id": "stream-1"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        assert response.headers["x-request-id"] == "stream-1"
        async for line in response.aiter_lines():
            lines.append(json.loads(line))
    assert all(set(line) == {"result"} for line in lines)
    events = [line["result"] for line in lines]
    deltas = [e["textDelta"] for e in events if "textDelta" in e]
    last = events[-1]
    assert len(deltas) > 2 and "reply" in last
    assert "".join(deltas) == last["reply"]["text"] and last["reply"]["partial"] is False
    assert last["message"]["text"] == "remember: it started Monday"
    listed = await ui.request("GET", f"/v1/{name}/messages")
    assert [m["name"] for m in listed.json()["messages"]] == [last["message"]["name"], last["reply"]["name"]]


async def test_a_stream_is_server_sent_events_when_asked(client: httpx.AsyncClient, keys: Keys) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    async with client.stream(
        "POST",
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "what next?"}},
        headers={**ui.headers(), "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        body = (await response.aread()).decode()
    events = sse_events(body)
    assert [kind for kind, _ in events[:-1]] == ["message"] * (len(events) - 1)
    assert events[-1] == ("end", {})
    assert "reply" in events[-2][1]
    deltas = "".join(data.get("textDelta", "") for _, data in events[:-1])
    assert deltas == events[-2][1]["reply"]["text"]


async def test_refusals_before_the_first_message_are_json_errors(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    too_long = await ui.request("POST", f"/v1/{name}/messages:stream", json={"message": {"text": "x" * 8001}})
    assert too_long.status_code == 400
    assert too_long.headers["content-type"] == "application/json"
    violations = [d for d in too_long.json()["details"] if d["@type"].endswith("BadRequest")]
    assert violations[0]["fieldViolations"][0]["field"] == "message.text"
    other = Ui(client, keys, uuid.uuid4())
    elsewhere = await client.post(
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "hi"}},
        headers={**other.headers(), "Accept": "text/event-stream"},
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == 5
    anonymous = await client.post(f"/v1/{name}/messages:stream", json={"message": {"text": "hi"}})
    assert anonymous.status_code == 401
    assert (await ui.request("GET", f"/v1/{name}/messages")).json()["messages"] == []


async def test_openapi_describes_the_stream(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/sessions/{session}/messages:stream"]["post"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"application/x-ndjson", "text/event-stream"}
    line = content["application/x-ndjson"]["schema"]["oneOf"]
    assert line[0]["properties"]["result"] == {
        "$ref": "#/components/schemas/flowpilot.sessions.v1.StreamMessageResponse"
    }
    assert line[1]["properties"]["error"] == {"$ref": "#/components/schemas/google.rpc.Status"}
    assert {"4XX", "5XX"} <= set(operation["responses"])


@pytest.mark.parametrize(
    ("accept", "sse"),
    [
        (None, False),
        (b"application/json", False),
        (b"text/event-stream", True),
        (b"application/x-ndjson, text/event-stream;q=0.5", False),
        (b"text/event-stream;q=0.9, application/x-ndjson;q=0.1", True),
        (b"text/event-stream;q=0", False),
        (b"*/*", False),
    ],
)
def test_accept_chooses_the_framing(accept: bytes | None, sse: bool) -> None:
    assert wants_sse(accept) is sse


@pytest.fixture
async def slow(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
    only_this_replica_delivers: None,
) -> AsyncIterator[tuple[httpx.AsyncClient, SlowBackend]]:
    """A gateway over a sessions service of its own, on a model that stalls."""
    backend = SlowBackend()
    async with (
        sessions_with(
            AI(backend),
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address=library_address,
        ) as address,
        serve_gateway(backends={"flowpilot.sessions.v1": address}, services=[SESSIONS]) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        yield client, backend


async def test_a_client_going_away_cancels_the_call_and_leaves_a_partial_reply(
    slow: tuple[httpx.AsyncClient, SlowBackend], keys: Keys
) -> None:
    client, backend = slow
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    async with client.stream(
        "POST", f"/v1/{name}/messages:stream", json={"message": {"text": "what next?"}}, headers=ui.headers()
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            assert json.loads(line) == {"result": {"textDelta": "The first piece.\n"}}
            break  # the message arrived before the stream's end: written as it came
    # Leaving the block closed the connection (httpx does not reuse an unread one).
    await asyncio.wait_for(backend.aborted.wait(), 5)

    async def stored() -> bool:
        listed = await ui.request("GET", f"/v1/{name}/messages")
        return len(listed.json()["messages"]) == 2

    await until(stored, what="the partial reply stored")
    messages = (await ui.request("GET", f"/v1/{name}/messages")).json()["messages"]
    assert messages[1]["partial"] is True and messages[1]["text"] == "The first piece.\n"


async def test_a_failure_mid_stream_is_the_last_line_or_event(
    slow: tuple[httpx.AsyncClient, SlowBackend], keys: Keys
) -> None:
    client, backend = slow
    backend.fail = True
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    response = await ui.request(
        "POST", f"/v1/{name}/messages:stream", json={"message": {"text": "what next?"}}
    )
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"result": {"textDelta": "The first piece.\n"}}
    error = lines[-1]["error"]
    assert error["code"] == 14 and error["details"][0]["reason"] == "MODEL_UNAVAILABLE"
    sse = await client.post(
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "and now?"}},
        headers={**ui.headers(), "Accept": "text/event-stream"},
    )
    events = sse_events(sse.text)
    assert events[0] == ("message", {"textDelta": "The first piece.\n"})
    assert events[-1][0] == "error" and events[-1][1]["code"] == 14
    assert "end" not in [kind for kind, _ in events]


async def test_the_deadline_covers_the_whole_stream(
    slow: tuple[httpx.AsyncClient, SlowBackend], keys: Keys
) -> None:
    client, backend = slow
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    started = asyncio.get_running_loop().time()
    response = await client.post(
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "what next?"}},
        headers={**ui.headers(), "Grpc-Timeout": "1S"},
    )
    elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 200 and elapsed < 5
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"result": {"textDelta": "The first piece.\n"}}
    assert lines[-1]["error"]["code"] == 4  # DEADLINE_EXCEEDED
    await asyncio.wait_for(backend.aborted.wait(), 5)


async def test_a_browser_stream_has_cors_headers(
    client: httpx.AsyncClient, keys: Keys, gateway_url: str
) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    async with client.stream(
        "POST",
        f"/v1/{name}/messages:stream",
        json={"message": {"text": "what next?"}},
        headers={**ui.headers(), "Origin": "http://evil.example", "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200 and response.headers["x-request-id"]
        body = (await response.aread()).decode()
    assert sse_events(body)[-1] == ("end", {})


async def test_an_http_1_0_client_gets_the_stream_unchunked(
    client: httpx.AsyncClient, keys: Keys, gateway_url: str
) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    name = await new_session(ui)
    host, port = gateway_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"message": {"text": "hi"}}'
    writer.write(
        f"POST /v1/{name}/messages:stream HTTP/1.0\r\nAuthorization: {ui.headers()['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    raw = await asyncio.wait_for(reader.read(), 10)  # to the connection's close
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
    lines = [json.loads(line) for line in rest.decode().splitlines()]
    assert "reply" in lines[-1]["result"]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /v1/{name} HTTP/1.0\r\nAuthorization: {ui.headers()['Authorization']}\r\n\r\n".encode()
    )
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(rest) in head.lower() and json.loads(rest)["name"] == name
