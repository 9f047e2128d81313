"""The HTTP/1.1 protocol the gateway runs (gateway.http): what llhttp refuses
in a request's head is read again by h11 and answered by the gateway, on
the same connection, which h11 then serves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from gateway.http import PROTOCOL
from tests.gateway.harness import MESSAGING, serve_gateway

pytest.importorskip("httptools", reason="without httptools every connection is h11's")


@pytest.fixture(scope="module")
async def port(echo: str) -> AsyncIterator[int]:
    async with serve_gateway(backends={"conformance.v1": echo}, services=[MESSAGING]) as url:
        yield int(url.rsplit(":", 1)[1])


def _request(headers: bytes = b"") -> bytes:
    return b"GET /v1/messages/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer x\r\n" + headers + b"\r\n"


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if line)
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def test_the_gateway_runs_llhttp_when_httptools_is_installed() -> None:
    assert PROTOCOL.__name__ == "LlhttpThenH11"


@pytest.mark.parametrize("split", [None, 40, 75], ids=["one read", "split in the line", "split before it"])
async def test_a_header_llhttp_refuses_is_the_gateways_400_and_the_connection_goes_on(
    port: int, split: int | None
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        bad = _request(b"Accept-Language: fr\x01\r\n")
        for part in (bad,) if split is None else (bad[:split], bad[split:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)  # separate reads on the server's side
        status, headers, body = await _answer(reader)
        assert status == 400 and headers["content-type"] == "application/json", body
        details = json.loads(body)["details"]
        assert any(v["field"] == "Accept-Language" for d in details for v in d.get("fieldViolations", [])), (
            body
        )
        for _ in range(2):  # the same connection, now h11's
            writer.write(_request())
            await writer.drain()
            status, _, body = await _answer(reader)
            assert status == 200, body
    finally:
        writer.close()


async def test_a_header_refused_after_other_requests_on_the_connection_is_the_gateways_400(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(3):
            writer.write(_request())
            await writer.drain()
            assert (await _answer(reader))[0] == 200
        writer.write(_request(b"X-Request-Id: a\x7fb\r\n"))
        await writer.drain()
        status, _, body = await _answer(reader)
        assert status == 400 and b"X-Request-Id" in body
    finally:
        writer.close()
