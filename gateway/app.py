"""The gateway application: route matching, auth check, transcoding, the
backend call, and the HTTP answer; plus /healthz, /readyz, /openapi.json and
/docs (the API reference: Redoc, from npm, bundled at build time into
gateway/static/ by `make`; nothing is loaded from elsewhere).

Built on Starlette (served by uvicorn); gRPC channels are opened once per
backend and reused. The W3C trace context of the HTTP request is continued
(OpenTelemetry ASGI middleware) and passed on to the services (gRPC client
interceptor), so a request is one trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import ASGIApp

from gateway import errors, headers, openapi, transcode
from gateway.config import GatewayConfig
from gateway.errors import HttpError
from gateway.observe import ROUTE_SCOPE_KEY, AccessLog
from gateway.routes import Route, compile_routes, discover_services
from services.core import logs
from services.core.rpc import CREATED_METADATA

log = logging.getLogger("flowpilot.gateway")

# How long past the call's deadline the gateway still waits before it answers
# 504 itself (gRPC normally ends the call at the deadline).
_DEADLINE_SLACK_SECONDS = 0.25
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        services: Sequence[descriptor.ServiceDescriptor],
        backends: dict[str, str],
    ) -> None:
        self.config = config
        self.routes = compile_routes(services)
        self.backends = backends
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], Any] = {}
        missing = {r.service.rsplit(".", 1)[0] for r in self.routes} - set(backends)
        if missing:
            raise ValueError(f"no backend address for {', '.join(sorted(missing))}")
        self.openapi = openapi.document(self.routes)
        self._forward = frozenset(h.lower().encode() for h in config.forward_headers) - {
            b"authorization",
            b"x-request-id",
        }
        self._reply_metadata = {h.lower() for h in config.response_metadata}

    def _address(self, route: Route) -> str:
        return self.backends[route.service.rsplit(".", 1)[0]]

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                address, interceptors=aio_client_interceptors(), options=[("grpc.keepalive_time_ms", 60_000)]
            )
            self._channels[address] = channel
        return channel

    def _call(self, route: Route) -> Any:
        key = (self._address(route), route.rpc_path)
        call = self._calls.get(key)
        if call is None:
            call = self._channel(key[0]).unary_unary(
                route.rpc_path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=route.output_class.FromString,
            )
            self._calls[key] = call
        return call

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
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

    def _timeout(self, request: Request) -> float:
        value = request.headers.get("grpc-timeout")
        if value is None:
            return self.config.default_timeout_seconds
        match = _TIMEOUT.match(value.strip())
        if match is None:
            raise errors.bad_request(
                "Grpc-Timeout must be digits and a unit (H, M, S, m, u, n), e.g. 5S", field="Grpc-Timeout"
            )
        return min(int(match.group(1)) * _UNITS[match.group(2)], self.config.max_timeout_seconds)

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes

        def too_large() -> HttpError:
            return HttpError(
                413,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"body larger than {limit} bytes",
                reason="BODY_TOO_LARGE",
            )

        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: Request) -> Response:
        reply_headers: dict[str, str] = {}
        call: Any = None
        try:
            raw_headers: list[tuple[bytes, bytes]] = request.scope["headers"]
            headers.check_total(raw_headers)
            given = dict(raw_headers)
            request_id = headers.request_id(given.get(b"x-request-id"))
            reply_headers["X-Request-Id"] = request_id
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            path = raw_path.decode("utf-8", "replace")
            route, values = self._match(request.method, path)
            request.scope[ROUTE_SCOPE_KEY] = route.template.source  # for the access line and metrics
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
            timeout = self._timeout(request)
            query = parse_qsl(request.url.query, keep_blank_values=True)
            message = transcode.build_request(route, values, query, await self._body(request))
            call = self._call(route)(message, metadata=metadata, timeout=timeout)
            # gRPC enforces the deadline; this bounds anything else that could
            # keep the request waiting (the call is cancelled with it).
            async with asyncio.timeout(timeout + _DEADLINE_SLACK_SECONDS):
                response = await call
                created = await self._created(route, call)
                if self._reply_metadata:
                    for key, value in await call.initial_metadata() or ():
                        if key in self._reply_metadata and isinstance(value, str):
                            reply_headers[key] = value
        except HttpError as error:
            return _json(error.http, errors.status_json(error.status), {**reply_headers, **error.headers})
        except grpc.aio.AioRpcError as error:
            status, body = errors.from_rpc_error(error)
            # The call was made, so the route is known: name fields as the client's JSON does.
            body = errors.json_field_paths(body, route.method.input_type)
            reply = dict(reply_headers)
            reply.update(errors.retry_after_headers(body))
            if status == 401:
                reply["WWW-Authenticate"] = 'Bearer realm="flowpilot", error="invalid_token"'
            return _json(status, errors.status_json(body), reply)
        except TimeoutError:
            if call is not None:
                call.cancel()
            timed_out = errors.transport_error(grpc.StatusCode.DEADLINE_EXCEEDED)
            return _json(504, errors.status_json(timed_out.status), reply_headers)
        except Exception:
            log.exception("gateway request failed")
            failed = errors.internal_error(logs.current_trace_id())
            return _json(500, errors.status_json(failed.status), reply_headers)
        if route.empty_response:
            return Response(status_code=204, headers=reply_headers)
        if created is not None:
            reply_headers["Location"] = created
            return _json(201, transcode.render(route, response), reply_headers)
        return _json(200, transcode.render(route, response), reply_headers)

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
        for route in self.routes:
            if route.http_method == "GET" and route.resource_prefix is not None:
                path = route.resource_prefix + name
                if route.template.match(path) == {"name": name}:
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


def create_app(
    config: GatewayConfig,
    *,
    services: Sequence[descriptor.ServiceDescriptor] | None = None,
    backends: dict[str, str] | None = None,
) -> ASGIApp:
    gateway = Gateway(
        config, services if services is not None else discover_services(), backends or config.backends()
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = await gateway.ready()
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "backends": detail}, status_code=200 if ok else 503
        )

    async def openapi_json(request: Request) -> Response:
        return Response(json.dumps(gateway.openapi).encode(), media_type="application/json")

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

    app = Starlette(
        routes=[
            HttpRoute("/healthz", healthz, methods=["GET"]),
            HttpRoute("/readyz", readyz, methods=["GET"]),
            HttpRoute("/openapi.json", openapi_json, methods=["GET"]),
            HttpRoute("/docs", docs, methods=["GET"]),
            HttpRoute("/docs/redoc.standalone.js", docs_bundle, methods=["GET"]),
            HttpRoute("/{path:path}", gateway.handle, methods=METHODS),
        ],
        middleware=[
            Middleware(AccessLog),  # outermost: preflights and every error are counted too
            Middleware(
                CORSMiddleware,
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
            ),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    traced: ASGIApp = OpenTelemetryMiddleware(app)
    return traced


def factory() -> ASGIApp:
    """uvicorn entry point (``gateway.app:factory``), configured from the environment."""
    from services.core import metrics, telemetry

    config = GatewayConfig()
    logs.configure(config.log_level, service="gateway")
    telemetry.setup("flowpilot-gateway")
    if config.workers == 1:
        metrics.serve(config.metrics_port, config.host)
    elif config.metrics_port:
        # uvicorn's workers have no index to tell their ports apart.
        log.warning("metrics are off with FLOWPILOT_WORKERS > 1: run one worker per replica")
    return create_app(config)
