"""Server-streaming RPCs over HTTP: one response whose body is written a
message at a time as the backend sends them.

Two framings, chosen by ``Accept``:

- newline-delimited JSON (``application/x-ndjson``, the default;
  grpc-gateway's convention): a line ``{"result": <message>}`` per stream
  message; an error after the first message is a last line
  ``{"error": <google.rpc.Status>}``; a stream that ended well simply ends
  (the chunked body's terminator);
- Server-Sent Events (``text/event-stream``, when ``Accept`` prefers it):
  ``event: message`` with ``data: <message>`` per stream message, then exactly
  one of ``event: end`` (``data: {}``: the stream completed) or ``event: error``
  (``data: <google.rpc.Status>``).

The gateway answers only once the backend sent its first message (or ended
the stream), so a refusal (validation, auth, not found) is the usual status
and JSON error body. From then on the status is 200 and an error is the
error line or event. The call's deadline covers the whole stream; a client
that goes away cancels the call. Each message is sent as it arrives, and the
next is read only once the send returned (uvicorn waits while the socket's
buffer is full), so a slow reader slows the backend's stream (gRPC's flow
control) instead of filling the gateway's memory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from google.rpc import status_pb2
from starlette.types import Receive, Send

from gateway import errors, transcode
from gateway.routes import Route
from services.core import logs

log = logging.getLogger("flowpilot.gateway")

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
# How long the last line or event may take to reach a client once the
# deadline passed (a client that stopped reading would hold the request).
_TAIL_SECONDS = 1.0


def wants_sse(accept: bytes | None) -> bool:
    """Whether ``Accept`` prefers ``text/event-stream`` over NDJSON (by q;
    NDJSON when neither is named or both weigh the same)."""
    if not accept or b"event-stream" not in accept:
        return False
    weights = {SSE: 0.0, NDJSON: 0.0}
    for item in accept.decode("latin-1").split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if media not in weights:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        weights[media] = max(weights[media], q)
    return weights[SSE] > 0 and weights[SSE] > weights[NDJSON]


def response_headers(sse: bool) -> list[tuple[bytes, bytes]]:
    """The headers of a stream's response (no Content-Length: it is chunked)."""
    return [
        (b"content-type", SSE.encode() if sse else NDJSON.encode()),
        (b"cache-control", b"no-cache"),
        # Proxies that buffer answers (nginx) pass this one on as it comes.
        (b"x-accel-buffering", b"no"),
    ]


class Disconnect:
    """Watches ``receive`` for the client going away and then cancels the call."""

    def __init__(self, receive: Receive, call: Any) -> None:
        self.task = asyncio.ensure_future(self._wait(receive))
        self.task.add_done_callback(lambda task: task.cancelled() or call.cancel())

    @staticmethod
    async def _wait(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # the rest of the request's body (already read: empty)

    @property
    def happened(self) -> bool:
        return self.task.done() and not self.task.cancelled()

    def stop(self) -> None:
        self.task.cancel()


class Stream:
    """The body of one streamed answer, sent by ``send_body``."""

    def __init__(
        self, route: Route, call: Any, first: Any, *, deadline: float, sse: bool, gone: Disconnect
    ) -> None:
        self.route, self.call, self.first = route, call, first
        self.deadline, self.sse, self.gone = deadline, sse, gone

    def _message(self, message: Any) -> bytes:
        rendered = transcode.render(self.route, message)
        if self.sse:
            return b"event: message\ndata: " + rendered + b"\n\n"
        return b'{"result":' + rendered + b"}\n"

    def _error(self, status: status_pb2.Status) -> bytes:
        body = errors.status_json(status)
        if self.sse:
            return b"event: error\ndata: " + body + b"\n\n"
        return b'{"error":' + body + b"}\n"

    async def send_body(self, send: Send) -> None:
        """Writes every message as it arrives, then the end (or the error)."""
        try:
            async with asyncio.timeout_at(self.deadline):
                message = self.first
                while message is not grpc.aio.EOF:
                    await send(
                        {"type": "http.response.body", "body": self._message(message), "more_body": True}
                    )
                    message = await self.call.read()
            tail = b"event: end\ndata: {}\n\n" if self.sse else b""
        except grpc.aio.AioRpcError as error:
            _, status = errors.from_rpc_error(error)
            tail = self._error(errors.json_field_paths(status, self.route.method.input_type))
        except TimeoutError:
            self.call.cancel()
            tail = self._error(errors.transport_error(grpc.StatusCode.DEADLINE_EXCEEDED).status)
        except asyncio.CancelledError:
            if self.gone.happened and not cancelling():
                return  # the client went away: the call is cancelled, nobody to tell
            self.call.cancel()
            raise
        except Exception:
            log.exception("gateway stream failed")
            self.call.cancel()
            tail = self._error(errors.internal_error(logs.current_trace_id()).status)
        finally:
            self.gone.stop()
        async with asyncio.timeout(_TAIL_SECONDS):
            await send({"type": "http.response.body", "body": tail, "more_body": False})


def cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just a call it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
