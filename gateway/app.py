"""The gateway application: route matching, auth check, transcoding, the
backend call, and the HTTP answer; plus /healthz, /readyz, /openapi.json and
/docs (the API reference: Redoc, from npm, bundled at build time into
gateway/static/ by `make`; nothing is loaded from elsewhere).

The API itself is answered by ``Gateway`` as a plain ASGI application (the
scope's headers, path and query read as they come, the answer sent as two
messages); Starlette serves the few fixed pages. gRPC channels are opened
once per backend and reused. The W3C trace context of the HTTP request is
continued and passed on to the services (``gateway.tracing``), so a request
is one trace.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import errors, headers, observe, streaming, tracing, transcode
from gateway.config import GatewayConfig
from gateway.errors import HttpError
from gateway.observe import ROUTE_SCOPE_KEY, AccessLog
from gateway.routes import Route, compile_routes, discover_services
from services.core import logs, memory, metrics, telemetry
from services.core.metadata import CREATED_METADATA

log = logging.getLogger("flowpilot.gateway")

# How long past the call's deadline the gateway still waits before it answers
# 504 itself (gRPC normally ends the call at the deadline).
_DEADLINE_SLACK_SECONDS = 0.25
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# The pages Starlette serves (GET and HEAD); any other request is the API's.
FIXED_PAGES = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/redoc.standalone.js"})
_JSON = (b"content-type", b"application/json")
# What the CORS middleware adds to an answer to a request without Origin.
_VARY = (b"vary", b"Origin")

Headers = list[tuple[bytes, bytes]]


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class Gateway:
    """The HTTP API: an ASGI application for every path but the fixed pages."""

    def __init__(
        self,
        config: GatewayConfig,
        services: Sequence[descriptor.ServiceDescriptor],
        backends: dict[str, str],
        *,
        traced: bool = False,
    ) -> None:
        self.config = config
        self.routes = compile_routes(services)
        self.backends = backends
        # With spans exported, OpenTelemetry's client interceptor records a span
        # per call; otherwise the trace context is passed on as metadata only.
        self.traced = traced
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}
        self._stream_calls: dict[str, grpc.aio.UnaryStreamMultiCallable[Any, Any]] = {}
        missing = {r.service.rsplit(".", 1)[0] for r in self.routes} - set(backends)
        if missing:
            raise ValueError(f"no backend address for {', '.join(sorted(missing))}")
        self._forward = frozenset(h.lower().encode() for h in config.forward_headers) - {
            b"authorization",
            b"x-request-id",
        }
        self._reply_metadata = {h.lower() for h in config.response_metadata}
        # Per HTTP method, its templates without a verb as one alternation, in
        # the routes' order (Python's ``re`` takes the first alternative that
        # matches the whole path); each alternative a group named for its route.
        self._plain_routes = {f"r{i}": r for i, r in enumerate(self.routes) if r.template.verb is None}
        self._plain = {
            method: re.compile(
                "|".join(
                    f"(?P<{name}>{route.template.pattern.pattern})"
                    for name, route in self._plain_routes.items()
                    if route.http_method == method
                ),
                re.DOTALL,
            )
            for method in {r.http_method for r in self._plain_routes.values()}
        }
        # GET /v1/{name=…} bindings: where a created resource's Location points.
        self._resources = [
            (r.resource_prefix, r.template)
            for r in self.routes
            if r.http_method == "GET" and r.resource_prefix is not None
        ]

    @functools.cached_property
    def openapi_json(self) -> bytes:
        """/openapi.json, made at its first request: the generator and the
        document are a megabyte and more that no API request needs."""
        from gateway import openapi

        return json.dumps(openapi.document(self.routes)).encode()

    def _address(self, route: Route) -> str:
        return self.backends[route.service.rsplit(".", 1)[0]]

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            interceptors = None
            if self.traced:
                # Imported only when spans are recorded (megabytes otherwise unused).
                from opentelemetry.instrumentation.grpc import aio_client_interceptors

                interceptors = aio_client_interceptors()
            channel = grpc.aio.insecure_channel(
                address,
                interceptors=interceptors,
                options=[("grpc.keepalive_time_ms", 60_000)],
            )
            self._channels[address] = channel
        return channel

    def _call(self, route: Route) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        call = self._calls.get(route.rpc_path)
        if call is None:
            call = self._channel(self._address(route)).unary_unary(
                route.rpc_path,
                request_serializer=_serialize,
                response_deserializer=route.output_class.FromString,
                # Registered once with gRPC core, as generated stubs do: no
                # per-call method lookup (~10% of a call's client CPU).
                _registered_method=True,  # type: ignore[call-arg]  # (not in grpc's stubs yet)
            )
            self._calls[route.rpc_path] = call
        return call

    def _stream_call(self, route: Route) -> grpc.aio.UnaryStreamMultiCallable[Any, Any]:
        call = self._stream_calls.get(route.rpc_path)
        if call is None:
            call = self._channel(self._address(route)).unary_stream(
                route.rpc_path,
                request_serializer=_serialize,
                response_deserializer=route.output_class.FromString,
                _registered_method=True,  # type: ignore[call-arg]  # (as in _call)
            )
            self._stream_calls[route.rpc_path] = call
        return call

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        # Without a verb (no ``:`` in the last segment) no custom method's
        # template can match, so the first template of this HTTP method that
        # matches is the answer: one regular expression of them all finds it.
        # With ``%`` (decoding decides) or no match, the reading below.
        if "%" not in path and ":" not in path.rpartition("/")[2]:
            plain = self._plain.get(method)
            found = plain.fullmatch(path) if plain is not None else None
            if found is not None:
                route = self._plain_routes[found.lastgroup]  # type: ignore[index]
                values = route.template.match(path)
                if values is not None:
                    return route, values
        return self.match_every_template(method, path)

    def match_every_template(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """``_match`` by trying every template (the reading ``_match`` shortens)."""
        matched: list[tuple[Route, dict[str, str]]] = []
        for route in self.routes:
            values = route.template.match(path)
            if values is not None:
                matched.append((route, values))
        # A path that ends in a custom method's verb (``…:resolve``) names that
        # method: another method there is 405, even when a less specific
        # template (``{name=sessions/*}``) would take the verb as part of an id.
        custom = [(r, v) for r, v in matched if r.template.verb is not None]
        for route, values in custom or matched:
            if route.http_method == method:
                return route, values
        if not matched:
            raise HttpError(404, grpc.StatusCode.NOT_FOUND, f"no API at {path}", reason="NO_ROUTE")
        listed = ", ".join(sorted({r.http_method for r, _ in custom or matched}))
        raise HttpError(
            405,
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not allowed here; use {listed}",
            reason="METHOD_NOT_ALLOWED",
            headers={"Allow": listed},
        )

    def _timeout(self, value: bytes | None) -> float:
        if value is None:
            return self.config.default_timeout_seconds
        match = _TIMEOUT.match(value.decode("latin-1").strip())
        if match is None:
            raise errors.bad_request(
                "Grpc-Timeout must be digits and a unit (H, M, S, m, u, n), e.g. 5S", field="Grpc-Timeout"
            )
        return min(int(match.group(1)) * _UNITS[match.group(2)], self.config.max_timeout_seconds)

    async def _body(self, given: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = given.get(b"content-length")
        if declared is None and b"transfer-encoding" not in given:
            return b""  # HTTP/1.1: neither a length nor chunks, so no body
        limit = self.config.max_body_bytes

        def too_large() -> HttpError:
            return HttpError(
                413,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"body larger than {limit} bytes",
                reason="BODY_TOO_LARGE",
            )

        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body, reply = await self.answer(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": reply})
        if isinstance(body, bytes):
            await send({"type": "http.response.body", "body": body})
        else:
            await body.send_body(send)

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes | streaming.Stream, Headers]:
        """Status, body and headers of the answer to one API request (the body
        of a server-streaming method's answer is a ``Stream``, sent after the headers)."""
        reply_headers: dict[str, str] = {}
        call: Any = None
        try:
            raw_headers: Headers = scope["headers"]
            headers.check_total(raw_headers)
            given = dict(raw_headers)
            request_id = headers.request_id(given.get(b"x-request-id"))
            reply_headers["x-request-id"] = request_id
            path = (scope.get("raw_path") or scope["path"].encode()).decode("utf-8", "replace")
            route, values = self._match(scope["method"], path)
            scope[ROUTE_SCOPE_KEY] = route.template.source  # for the access line and metrics
            metadata = self._metadata(given, raw_headers, request_id)
            timeout = self._timeout(given.get(b"grpc-timeout"))
            query = _query(scope["query_string"])
            message = transcode.build_request(route, values, query, await self._body(given, receive))
            if route.streams:
                return await self._open_stream(
                    route,
                    message,
                    metadata=metadata,
                    seconds=timeout,
                    given=given,
                    receive=receive,
                    reply_headers=reply_headers,
                )
            call = self._call(route)(message, metadata=metadata, timeout=timeout)
            # gRPC enforces the deadline; this bounds anything else that could
            # keep the request waiting (the call is cancelled with it).
            async with asyncio.timeout(timeout + _DEADLINE_SLACK_SECONDS):
                response = await call
                created = await self._created(route, call)
                if self._reply_metadata:
                    await self._copy_reply_metadata(call, reply_headers)
        except HttpError as error:
            return _answer(error.http, errors.status_json(error.status), {**reply_headers, **error.headers})
        except grpc.aio.AioRpcError as error:
            return _rpc_error_answer(error, route, reply_headers)
        except TimeoutError:
            if call is not None:
                call.cancel()
            timed_out = errors.transport_error(grpc.StatusCode.DEADLINE_EXCEEDED)
            return _answer(504, errors.status_json(timed_out.status), reply_headers)
        except ClientGone:
            gone = errors.transport_error(grpc.StatusCode.CANCELLED)
            return _answer(499, errors.status_json(gone.status), reply_headers)
        except Exception:
            log.exception("gateway request failed")
            failed = errors.internal_error(logs.current_trace_id())
            return _answer(500, errors.status_json(failed.status), reply_headers)
        if route.empty_response:
            return 204, b"", _encode(reply_headers)
        if created is not None:
            reply_headers["location"] = created
            return _answer(201, transcode.render(route, response), reply_headers)
        return _answer(200, transcode.render(route, response), reply_headers)

    async def _open_stream(
        self,
        route: Route,
        message: Any,
        *,
        metadata: list[tuple[str, str]],
        seconds: float,
        given: dict[bytes, bytes],
        receive: Receive,
        reply_headers: dict[str, str],
    ) -> tuple[int, streaming.Stream, Headers]:
        """Starts a server-streaming call and waits for its first message (or
        its end): a refusal before it raises as a unary call's error does."""
        deadline = asyncio.get_running_loop().time() + seconds + _DEADLINE_SLACK_SECONDS
        call = self._stream_call(route)(message, metadata=metadata, timeout=seconds)
        gone = streaming.Disconnect(receive, call)
        try:
            async with asyncio.timeout_at(deadline):
                first = await call.read()
                if self._reply_metadata:
                    await self._copy_reply_metadata(call, reply_headers)
        except asyncio.CancelledError:
            if gone.happened and not streaming.cancelling():
                raise ClientGone from None
            call.cancel()
            gone.stop()
            raise
        except BaseException:
            call.cancel()
            gone.stop()
            raise
        sse = streaming.wants_sse(given.get(b"accept"))
        stream = streaming.Stream(route, call, first, deadline=deadline, sse=sse, gone=gone)
        return 200, stream, [*_encode(reply_headers), *streaming.response_headers(sse)]

    def _metadata(
        self, given: dict[bytes, bytes], raw_headers: Headers, request_id: str
    ) -> list[tuple[str, str]]:
        """The call's metadata: the bearer token (401 without one), the request
        id, the forwarded headers and (when no span is recorded) the trace context."""
        authorization = given.get(b"authorization")
        if not authorization:
            raise HttpError(
                401,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token",
                reason="UNAUTHENTICATED",
                headers={"WWW-Authenticate": 'Bearer realm="flowpilot"'},
            )
        metadata = [
            ("authorization", headers.metadata_value(b"authorization", authorization)),
            ("x-request-id", request_id),
            *headers.forwarded(raw_headers, self._forward),
        ]
        if not self.traced:
            tracing.inject(metadata)
        return metadata

    async def _copy_reply_metadata(self, call: Any, reply_headers: dict[str, str]) -> None:
        for key, value in await call.initial_metadata() or ():
            if key in self._reply_metadata and isinstance(value, str):
                reply_headers[key] = value

    async def _created(self, route: Route, call: Any) -> str | None:
        """The gateway path of the resource the call created, if it created one.

        Services say so in trailing metadata (``services.core.rpc.created``):
        a get-or-create that resumed, or a replayed ``request_id``, creates
        nothing and is 200."""
        if route.http_method != "POST":
            return None
        for key, value in await call.trailing_metadata() or ():
            if key == CREATED_METADATA and isinstance(value, str):
                return self._location(value)
        return None

    def _location(self, name: str) -> str:
        for prefix, template in self._resources:
            path = prefix + name
            if template.match(path) == {"name": name}:
                return path
        return "/" + name

    async def ready(self) -> tuple[bool, dict[str, str]]:
        async def check(package: str, address: str) -> tuple[str, str]:
            try:
                reply = await health_pb2_grpc.HealthStub(self._channel(address)).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.5
                )
                return package, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as error:
                return package, error.code().name

        used = sorted({r.service.rsplit(".", 1)[0] for r in self.routes})
        results = dict(await asyncio.gather(*(check(p, self.backends[p]) for p in used)))
        return all(v == "SERVING" for v in results.values()), results


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _query(raw: bytes) -> list[tuple[str, str]]:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise errors.bad_request("the query string is not UTF-8", reason="INVALID_QUERY") from None
    return parse_qsl(text, keep_blank_values=True) if text else []


def _encode(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _rpc_error_answer(
    error: grpc.aio.AioRpcError, route: Route, reply_headers: dict[str, str]
) -> tuple[int, bytes, Headers]:
    status, body = errors.from_rpc_error(error)
    # The call was made, so the route is known: name fields as the client's JSON does.
    body = errors.json_field_paths(body, route.method.input_type)
    reply = dict(reply_headers)
    reply.update(errors.retry_after_headers(body))
    if status == 401:
        reply["WWW-Authenticate"] = 'Bearer realm="flowpilot", error="invalid_token"'
    return _answer(status, errors.status_json(body), reply)


def _answer(status: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, Headers]:
    """A JSON answer: its headers as ASGI sends them."""
    return status, body, [*_encode(headers), (b"content-length", b"%d" % len(body)), _JSON]


class _Dispatch:
    """The fixed pages (GET, HEAD), lifespan and anything not HTTP to Starlette;
    every other request to the gateway."""

    def __init__(self, gateway: Gateway, pages: ASGIApp) -> None:
        self.gateway = gateway
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"] not in FIXED_PAGES or scope["method"] not in ("GET", "HEAD")
        ):
            await self.gateway(scope, receive, send)
        else:
            await self.pages(scope, receive, send)


class _Front:
    """What uvicorn serves when no spans are recorded: the request's trace
    context (``gateway.tracing``), then an API request without ``Origin``
    answered by the gateway at once, its access line and metrics recorded
    here (``observe.record``) and ``Vary: Origin`` added as the CORS
    middleware adds it to such answers; anything else (the fixed pages,
    browsers' CORS requests, lifespan) through ``stack``, the same access
    log, CORS and dispatch that serve every request when spans are recorded."""

    def __init__(self, gateway: Gateway, stack: ASGIApp) -> None:
        self.gateway = gateway
        self.stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.stack(scope, receive, send)
            return
        continued = tracing.begin(scope["headers"], scope["method"])
        try:
            if scope["path"] in FIXED_PAGES or any(key == b"origin" for key, _ in scope["headers"]):
                await self.stack(scope, receive, send)
            else:
                await self._answer(scope, receive, send)
        finally:
            tracing.end(continued)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status, request_id = 500, None
        metrics.HTTP_ACTIVE.inc()
        try:
            status, body, reply = await self.gateway.answer(scope, receive)
            request_id = observe.reply_request_id(reply)
            reply.append(_VARY)
            await send({"type": "http.response.start", "status": status, "headers": reply})
            if isinstance(body, bytes):
                await send({"type": "http.response.body", "body": body})
            else:
                await body.send_body(send)
        finally:
            metrics.HTTP_ACTIVE.dec()
            observe.record(scope, status, request_id, started)


# Redoc's standalone bundle (tools/node/node_modules/redoc), copied here at
# build time (the Makefile's gateway/static/redoc.standalone.js).
REDOC_BUNDLE = Path(__file__).resolve().parent / "static" / "redoc.standalone.js"
_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FlowPilot API reference</title>
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="docs/redoc.standalone.js"></script>
</body>
</html>
"""
# Only this gateway's own page, script and document (Redoc's search runs in a blob: worker).
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; worker-src blob:; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; base-uri 'none'"
)


def _pages(gateway: Gateway) -> Starlette:
    """The gateway's own pages: health, readiness, the OpenAPI document and its reference."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = await gateway.ready()
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "backends": detail}, status_code=200 if ok else 503
        )

    async def openapi_json(request: Request) -> Response:
        return Response(gateway.openapi_json, media_type="application/json")

    def docs_not_built() -> Response:
        missing = HttpError(
            404,
            grpc.StatusCode.NOT_FOUND,
            "the API reference is not built (make copies Redoc into gateway/static)",
            reason="DOCS_NOT_BUILT",
        )
        return _json(404, errors.status_json(missing.status))

    async def docs(request: Request) -> Response:
        if not REDOC_BUNDLE.is_file():
            return docs_not_built()
        return HTMLResponse(_DOCS_PAGE, headers={"Content-Security-Policy": _DOCS_CSP})

    async def docs_bundle(request: Request) -> Response:
        if not REDOC_BUNDLE.is_file():
            return docs_not_built()
        return FileResponse(
            REDOC_BUNDLE, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"}
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.close()

    pages = Starlette(
        routes=[
            HttpRoute("/healthz", healthz, methods=["GET"]),
            HttpRoute("/readyz", readyz, methods=["GET"]),
            HttpRoute("/openapi.json", openapi_json, methods=["GET"]),
            HttpRoute("/docs", docs, methods=["GET"]),
            HttpRoute("/docs/redoc.standalone.js", docs_bundle, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return pages


def create_app(
    config: GatewayConfig,
    *,
    services: Sequence[descriptor.ServiceDescriptor] | None = None,
    backends: dict[str, str] | None = None,
    traced: bool | None = None,
) -> ASGIApp:
    """The gateway as an ASGI application. ``traced``: record the gateway's
    spans (OpenTelemetry's middleware and interceptors); by default, when
    the process exports spans (otherwise only the trace context is passed on)."""
    traced = telemetry.exporting() if traced is None else traced
    gateway = Gateway(
        config,
        services if services is not None else discover_services(),
        backends or config.backends(),
        traced=traced,
    )

    pages = _pages(gateway)
    pages.state.gateway = gateway
    app: ASGIApp = CORSMiddleware(
        _Dispatch(gateway, pages),
        allow_origins=config.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=[
            "authorization",
            "content-type",
            "x-request-id",
            "grpc-timeout",
            "traceparent",
            "tracestate",
        ],
        expose_headers=["x-request-id"],
        max_age=600,
    )
    app = AccessLog(app)  # outside CORS: preflights and every error are counted too
    if not traced:
        return _Front(gateway, app)
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # (as above)

    recorded: ASGIApp = OpenTelemetryMiddleware(app)
    return recorded


def factory() -> ASGIApp:
    """uvicorn entry point (``gateway.app:factory``), configured from the environment."""
    memory.tune()  # before gRPC's threads: two malloc arenas, not eight per core
    config = GatewayConfig()
    logs.configure(config.log_level, service="gateway")
    telemetry.setup("flowpilot-gateway")
    if config.workers == 1:
        metrics.serve(config.metrics_port, config.host)
    # With more workers, each records into PROMETHEUS_MULTIPROC_DIR and the
    # supervising process serves them all (gateway.__main__).
    return create_app(config)
