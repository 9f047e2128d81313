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

Without httptools, h11 serves every connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

PROTOCOL: type[asyncio.Protocol]
try:
    import httptools  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover (httptools is a dependency; this is a safe default)
    PROTOCOL = H11Protocol
else:

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
