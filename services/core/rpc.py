"""The runtime: what happens around every RPC of every service.

For each method of the services a server hosts, the access rule comes from
the proto (``flowpilot.api.v1.minimum_role``); a method without one stops the
server at start (fail closed). Around each call, in order: verify the bearer
token, check the role, check the request against its field annotations, bind
the principal and log context, run the handler, and map whatever escapes to a
rich status. Health and reflection stay open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from flowpilot.api.v1 import access_pb2
from google.protobuf import descriptor, descriptor_pool
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.core import logs, telemetry
from services.core.auth import Role, TokenVerifier, bind_principal, unbind_principal
from services.core.errors import FlowPilotError, InvalidArgument, internal_status, to_grpc_status
from services.core.validation import violations

log = logging.getLogger("flowpilot.rpc")

OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

Handler = Callable[[Message, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class MethodRule:
    full_name: str
    minimum_role: Role
    service_allowed: bool = False


def method_rules(service_names: Iterable[str]) -> dict[str, MethodRule]:
    """``/pkg.Service/Method`` → rule, for every method of the named services."""
    pool = descriptor_pool.Default()
    rules: dict[str, MethodRule] = {}
    for service_name in service_names:
        service: descriptor.ServiceDescriptor = pool.FindServiceByName(service_name)
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                raise RuntimeError(f"{method.full_name}: streaming methods are not supported")
            role = method.GetOptions().Extensions[access_pb2.minimum_role]
            if role == access_pb2.ROLE_UNSPECIFIED:
                raise RuntimeError(f"{method.full_name} declares no flowpilot.api.v1.minimum_role")
            allowed = bool(method.GetOptions().Extensions[access_pb2.service_allowed])
            rules[f"/{service.full_name}/{method.name}"] = MethodRule(method.full_name, Role(role), allowed)
    return rules


class Runtime:
    """Wraps each method handler of the hosted services once, when the service
    is registered, rather than intercepting every call: each grpc.aio
    interceptor costs a coroutine and a handler per RPC (dropping them was
    worth 15-20% of a get-session's server CPU).

    ``spans``: when nothing exports spans, the OpenTelemetry server
    interceptor is not installed either; the wrapper then continues the
    caller's W3C trace context itself (a non-recording span with its own id),
    so logs, INTERNAL errors and outgoing calls still carry the trace.
    """

    def __init__(
        self, *, verifier: TokenVerifier, rules: dict[str, MethodRule], domain: str, spans: bool
    ) -> None:
        self._verifier = verifier
        self._rules = rules
        self._domain = domain
        self._spans = spans

    def registrar(self, server: grpc.aio.Server) -> Registrar:
        """What a generated ``add_*Servicer_to_server`` is given instead of the server."""
        return Registrar(server, self)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        rule = self._rules.get(method)
        if rule is None:
            return handler  # not a FlowPilot method: health and reflection are added unwrapped
        return grpc.unary_unary_rpc_method_handler(
            self._behavior(rule, cast(Handler, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _behavior(self, rule: MethodRule, inner: Handler) -> Handler:
        domain = self._domain
        verifier = self._verifier
        own_span = not self._spans

        async def behavior(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            started = time.perf_counter()
            metadata = dict(context.invocation_metadata() or ())
            span_token = None
            if own_span:
                span_token = otel_context.attach(
                    trace.set_span_in_context(telemetry.continue_trace(metadata))
                )
            log_token = logs.bind(method=rule.full_name)
            principal_token = None
            outcome = "OK"
            try:
                header = metadata.get("authorization")
                principal = verifier.verify_header(header if isinstance(header, str) else None)
                logs.bind(account_id=str(principal.account_id))  # undone with log_token
                if not (rule.service_allowed and principal.role is Role.SERVICE):
                    principal.require(rule.minimum_role)
                found = violations(request)
                if found:
                    raise InvalidArgument(found)
                principal_token = bind_principal(principal)
                return await inner(request, context)
            except FlowPilotError as error:
                outcome = error.code.name
                await context.abort_with_status(to_grpc_status(error, domain=domain))
                raise  # unreachable: abort raises
            except grpc.aio.AbortError:
                raise
            except Exception:
                outcome = "INTERNAL"
                log.exception("unhandled error in %s", rule.full_name)
                await context.abort_with_status(
                    internal_status(domain=domain, trace_id=logs.current_trace_id())
                )
                raise
            finally:
                if principal_token is not None:
                    unbind_principal(principal_token)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "rpc",
                        extra={
                            "fields": {
                                "code": outcome,
                                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            }
                        },
                    )
                logs.unbind(log_token)
                if span_token is not None:
                    otel_context.detach(span_token)

        return behavior


class Registrar:
    """Stands in for the server while generated code registers a service:
    every handler it adds is wrapped by the runtime first."""

    def __init__(self, server: grpc.aio.Server, runtime: Runtime) -> None:
        self._server = server
        self._runtime = runtime

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        wrapped = {name: self._runtime.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGeneric(h, self._runtime) for h in handlers])


class _WrappedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, runtime: Runtime) -> None:
        self._inner = inner
        self._runtime = runtime
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        if method not in self._wrapped:
            found = self._inner.service(details)
            self._wrapped[method] = None if found is None else self._runtime.wrap(method, found)
        return self._wrapped[method]
