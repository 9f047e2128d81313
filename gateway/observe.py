"""One access line and the ``http_server_*`` metrics per HTTP request.

``record`` writes them: called by ``AccessLog`` (pure ASGI middleware, no
per-request task or body buffering) or, for the API's plain requests, by the
gateway's front (``gateway.app``), in either case inside the request's trace
context, so the line carries its trace id. The route is the
matched binding's template (``/v1/{name=sessions/*}``), which the gateway
puts in the scope; fixed paths are themselves and anything else is
``unmatched``, so no label ever holds a client's path or id. The request id
is the ``X-Request-Id`` the gateway answered with (the client's, or one it
drew). Nothing of headers, query or body is logged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import logs, metrics

access = logging.getLogger("flowpilot.access")

# Set by the gateway once a request matched a binding.
ROUTE_SCOPE_KEY = "flowpilot.route"
FIXED_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def record(scope: Scope, status: int, request_id: str | None, started: float) -> None:
    """The access line and the metrics of one answered request."""
    duration = time.perf_counter() - started
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    path = scope["path"]
    route = scope.get(ROUTE_SCOPE_KEY) or (path if path in FIXED_PATHS else "unmatched")
    requests, seconds = _series(method, route, status)
    requests.inc()
    seconds.observe(duration)
    logs.info_line(
        access,
        "http",
        {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "request_id": request_id,
        },
    )


@functools.cache
def _series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The counter and histogram children of one label set (methods, routes and
    statuses are few, so this holds a bounded number)."""
    return metrics.HTTP_REQUESTS.labels(method, route, str(status)), metrics.HTTP_SECONDS.labels(
        method, route
    )


def reply_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == b"x-request-id":
            return value.decode("latin-1")
    return None


class AccessLog:
    """ASGI middleware: ``record`` for every HTTP request it passes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts
        request_id: str | None = None

        async def observed(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = reply_request_id(message.get("headers", ()))
            await send(message)

        metrics.HTTP_ACTIVE.inc()
        try:
            await self.app(scope, receive, observed)
        finally:
            metrics.HTTP_ACTIVE.dec()
            record(scope, status, request_id, started)
