"""The HTTP/1.1 protocol uvicorn runs for the gateway (``PROTOCOL``).

httptools (llhttp, in C) when installed: it reads a request in a fraction of
h11's time. But llhttp refuses some requests itself, with a bare 400, that
the gateway must answer: a header value with a control character is the
gateway's JSON 400 naming the header (``gateway.headers``), and a header
llhttp cannot read is that, not "Invalid HTTP request received.". So when
llhttp refuses a request while reading its head, the connection is handed
to h11 (pure Python, lenient enough to pass such a header on to the
gateway), which reads that request again from its first byte and serves
the connection from then on. That first byte is known when the request
began at the start of a read from the socket, as every request on a
connection without pipelining does; a refusal that cannot be read again
(a pipelined request, or one refused in its body) is llhttp's 400.

A response without ``Content-Length`` (a streamed answer, ``gateway.streaming``)
is chunked for HTTP/1.1, as uvicorn writes it; an HTTP/1.0 client cannot read
chunks, so for it such a body is written as it is and ends when the
connection closes (h11 does both by itself).

Without httptools, h11 serves every connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

PROTOCOL: type[asyncio.Protocol]
try:
    import httptools  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # pragma: no cover (httptools is a dependency; this is a safe default)
    PROTOCOL = H11Protocol
else:

    class CloseDelimited(RequestResponseCycle):
        """The cycle of an HTTP/1.0 request: a response without a length is not
        chunked (HTTP/1.0 has no chunks) but ended by closing the connection."""

        _until_close = False

        async def send(self, message: Any) -> None:
            if message["type"] == "http.response.start" and not self.response_started:
                given = message.get("headers", ())
                if not any(name.lower() == b"content-length" for name, _ in given):
                    self._until_close = True
                    self.chunked_encoding = False  # so uvicorn adds no Transfer-Encoding
                    self.keep_alive = False
            elif self._until_close and message["type"] == "http.response.body" and not self.response_complete:
                if self.flow.write_paused and not self.disconnected:
                    await self.flow.drain()
                if self.disconnected:
                    return
                if self.scope["method"] != "HEAD":
                    self.transport.write(message.get("body", b""))
                if not message.get("more_body", False):
                    self.response_complete = True
                    self.message_event.set()
                    self.transport.close()
                    self.on_response()
                return
            await super().send(message)

    class LlhttpThenH11(HttpToolsProtocol):
        """httptools, and h11 for a connection once llhttp refuses a request's head."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_request = False
            # The bytes read since the request in progress began, while its
            # head is read and it began at the start of a read; else None.
            self._head: bytes | None = None

        def data_received(self, data: bytes) -> None:
            if not self._in_request:
                self._head = data
            elif self._head is not None:
                self._head += data
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                if self._head is not None:
                    self._read_with_h11(self._head)
                    return
                # As uvicorn's HttpToolsProtocol answers.
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()

        def on_message_begin(self) -> None:
            self._in_request = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._head = None
            super().on_headers_complete()
            if (
                self.scope.get("http_version") == "1.0"
                and self.cycle is not None
                and self.cycle.scope is self.scope
            ):
                self.cycle.__class__ = CloseDelimited  # (its task has not run yet)

        def on_message_complete(self) -> None:
            # A next request in the same read began somewhere inside it.
            self._in_request = False
            self._head = None
            super().on_message_complete()

        def _read_with_h11(self, data: bytes) -> None:
            h11 = H11Protocol(self.config, self.server_state, self.app_state, self.loop)
            self.connections.discard(self)
            self.transport.set_protocol(h11)
            h11.connection_made(self.transport)
            h11.data_received(data)

    PROTOCOL = LlhttpThenH11
