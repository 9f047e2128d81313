"""The runtime interceptor: what happens around every RPC of every service.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from flowpilot.api.v1 import access_pb2
from google.protobuf import descriptor, descriptor_pool
from google.protobuf.message import Message

from services.core import logs
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


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, *, verifier: TokenVerifier, rules: dict[str, MethodRule], domain: str) -> None:
        self._verifier = verifier
        self._rules = rules
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        rule = self._rules.get(method)
        if handler is None or rule is None:
            # Health, reflection, or an unknown method (UNIMPLEMENTED by grpc).
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(rule, cast(Handler, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, rule: MethodRule, inner: Handler) -> Handler:
        domain = self._domain
        verifier = self._verifier

        async def behavior(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            started = time.perf_counter()
            log_token = logs.bind(method=rule.full_name)
            principal_token = None
            outcome = "OK"
            try:
                metadata = dict(context.invocation_metadata() or ())
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

        return behavior
