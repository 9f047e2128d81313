"""The runtime: what happens around every RPC of every service.

For each method of the services a server hosts, the access rule comes from
the proto (``flowpilot.api.v1.minimum_role``, and ``service_callers`` for the
services whose own tokens may call it); a method without a minimum role, or an
internal one that names no caller, stops the server at start (fail closed).
Around each call, in order: verify the bearer token, check the role (or the
calling service), decode the request (bytes that are not a valid message are
INVALID_ARGUMENT, never UNKNOWN), check it against its field annotations and
the text rules every string obeys, bind the principal and log context, run the
handler, and map whatever escapes to a rich status. Health and reflection stay
open.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from flowpilot.api.v1 import access_pb2
from google.protobuf import descriptor, descriptor_pool
from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.core import logs, memory, metrics, telemetry
from services.core.auth import Principal, Role, TokenVerifier, bind_principal, unbind_principal
from services.core.errors import (
    DeadlineExceeded,
    FlowPilotError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    internal_status,
    to_grpc_status,
)
from services.core.metadata import CREATED_METADATA, REQUEST_ID_METADATA
from services.core.validation import (
    COUNTED_FROM_BYTES,
    check_wire,
    malformed_request,
    text_violations,
    violations,
)

log = logging.getLogger("flowpilot.rpc")
# One line per RPC at INFO: method, code, duration, account, request id, trace id.
access = logging.getLogger("flowpilot.access")
_REQUEST_ID_MAX = 128  # characters of the caller's request id logged

OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

_created: contextvars.ContextVar[list[str]] = contextvars.ContextVar("flowpilot_created")


def created(name: str) -> None:
    """Says that the current call created the resource ``name``."""
    _created.get().append(name)


# A request this large (serialized) waits for one of LARGE_REQUESTS_AT_ONCE
# places before it is decoded (a valid 4 MiB flow takes ~45 MB on its way to
# the database), and the heap is trimmed after it (services.core.memory).
LARGE_REQUEST_BYTES = 1024 * 1024
LARGE_REQUESTS_AT_ONCE = 1

Handler = Callable[[Message, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]
Decoder = Callable[[bytes], Message]


@dataclass(frozen=True, slots=True)
class MethodRule:
    full_name: str
    minimum_role: Role
    # Services whose own tokens may call the method.
    service_callers: frozenset[str] = frozenset()

    def authorize(self, principal: Principal) -> None:
        """PERMISSION_DENIED unless ``principal`` may call the method."""
        if principal.role is Role.SERVICE:
            if principal.service not in self.service_callers:
                raise PermissionDenied("this service may not call this method")
            return
        principal.require(self.minimum_role)


def method_rules(service_names: Iterable[str]) -> dict[str, MethodRule]:
    """``/pkg.Service/Method`` → rule, for every method of the named services."""
    pool = descriptor_pool.Default()
    rules: dict[str, MethodRule] = {}
    for service_name in service_names:
        service: descriptor.ServiceDescriptor = pool.FindServiceByName(service_name)
        for method in service.methods:
            if method.client_streaming:
                raise RuntimeError(f"{method.full_name}: client streaming methods are not supported")
            options = method.GetOptions()
            role = options.Extensions[access_pb2.minimum_role]
            if role == access_pb2.ROLE_UNSPECIFIED:
                raise RuntimeError(f"{method.full_name} declares no flowpilot.api.v1.minimum_role")
            callers = frozenset(options.Extensions[access_pb2.service_callers])
            if role == access_pb2.ROLE_SERVICE and not callers:
                raise RuntimeError(f"{method.full_name} is internal but names no service_callers")
            rules[f"/{service.full_name}/{method.name}"] = MethodRule(method.full_name, Role(role), callers)
    return rules


class _Calls:
    """The calls a runtime is running, for shutdown: once ``refusing``, new
    calls are turned away; ``idle`` is set while none runs."""

    def __init__(self) -> None:
        self.refusing = False
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def started(self) -> None:
        self.running += 1
        self.idle.clear()

    def ended_with(self, _context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A done callback of the call: its status has been sent."""
        self.running -= 1
        if not self.running:
            self.idle.set()


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
        self,
        *,
        verifier: TokenVerifier,
        rules: dict[str, MethodRule],
        domain: str,
        spans: bool,
        default_deadline_seconds: float = 60.0,
    ) -> None:
        self._verifier = verifier
        self._rules = rules
        self._domain = domain
        self._spans = spans
        self._default_deadline = default_deadline_seconds
        # Large requests decode into many times their size in Python objects:
        # a few at a time keep a process's memory bounded (others wait).
        self._large_requests = asyncio.Semaphore(LARGE_REQUESTS_AT_ONCE)
        self._calls = _Calls()

    async def refuse_new_calls(self) -> None:
        """Turns new calls away (UNAVAILABLE, which clients retry elsewhere)
        and returns when none of the running ones is left (bound it with a timeout)."""
        self._calls.refusing = True
        await self._calls.idle.wait()

    def registrar(self, server: grpc.aio.Server) -> Registrar:
        """What a generated ``add_*Servicer_to_server`` is given instead of the server."""
        return Registrar(server, self)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        rule = self._rules.get(method)
        if rule is None:
            return handler  # not a FlowPilot method: health and reflection are added unwrapped
        # The request arrives as bytes and is decoded inside the runtime, after
        # the token is checked: a deserializer's exception would reach the
        # caller as UNKNOWN with the library's text.
        decode = cast(Decoder, handler.request_deserializer)
        input_type = descriptor_pool.Default().FindMethodByName(rule.full_name).input_type
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _StreamMethod(self, rule, cast(Any, handler.unary_stream), decode, input_type).handle,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._behavior(rule, cast(Handler, handler.unary_unary), decode, input_type),
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )

    def _behavior(
        self, rule: MethodRule, inner: Handler, decode: Decoder, input_type: descriptor.Descriptor
    ) -> Handler:
        return _Method(
            self, rule, inner, decode, input_type
        ).handle  # a coroutine function, as grpc.aio checks


class _Method:
    """One wrapped method: every call is admitted (token, role, shutdown),
    its request counted, decoded and checked, the handler run under a
    deadline, and the outcome turned into a status, a metric and a log line."""

    def __init__(
        self,
        runtime: Runtime,
        rule: MethodRule,
        inner: Handler,
        decode: Decoder,
        input_type: descriptor.Descriptor,
    ) -> None:
        self.rule, self.inner, self.decode, self.input_type = rule, inner, decode, input_type
        self.domain = runtime._domain
        self.verifier = runtime._verifier
        self.own_span = not runtime._spans
        self.default_deadline = runtime._default_deadline
        self.large_requests = runtime._large_requests
        self.calls = runtime._calls
        # Metric children bound once per method: a call only increments them.
        service_name, _, method_name = rule.full_name.rpartition(".")
        self.labels = ("unary", service_name, method_name)
        self.started_total = metrics.GRPC_STARTED.labels(*self.labels)
        self.handling_seconds = metrics.GRPC_SECONDS.labels(*self.labels)
        self.in_flight = metrics.GRPC_IN_FLIGHT.labels(service_name)
        self.handled: dict[str, Any] = {"OK": metrics.GRPC_HANDLED.labels(*self.labels, "OK")}

    def count(self, code: str) -> Any:
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = metrics.GRPC_HANDLED.labels(*self.labels, code)
        return child

    async def handle(self, raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        self.calls.started()
        # Ended when gRPC has sent the status, not when the handler returns:
        # a shutdown waiting for the calls must not cut a reply off.
        context.add_done_callback(cast(Any, self.calls.ended_with))  # the stubs want a class of theirs
        span_token, log_token = self.begin(metadata)
        principal_token = None
        outcome = "OK"
        large = False
        request: Message | None = None
        try:
            principal = self.admit(metadata)
            if len(raw) >= COUNTED_FROM_BYTES:
                check_wire(raw, self.input_type)
            if len(raw) > LARGE_REQUEST_BYTES:
                await self.large_turn(context)
                large = True
            request = self.checked(raw)
            principal_token = bind_principal(principal)
            return await self.run(request, context)
        except FlowPilotError as error:
            outcome = error.code.name
            # A refusal's traceback keeps its frames, and with them the
            # request and all made of it, until the cycle collector runs.
            traceback.clear_frames(error.__traceback__)
            await context.abort_with_status(to_grpc_status(error, domain=self.domain))
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            code = context.code()  # a handler aborted with a code of its own
            outcome = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise
        except asyncio.CancelledError:
            # The caller went away, or gRPC ended the call at its deadline.
            remaining = context.time_remaining()
            outcome = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except Exception:
            outcome = "INTERNAL"
            log.exception("unhandled error in %s", self.rule.full_name)
            traceback.clear_frames(sys.exc_info()[2])
            await context.abort_with_status(
                internal_status(domain=self.domain, trace_id=logs.current_trace_id())
            )
            raise
        finally:
            request = None  # this frame too may outlive the call in a traceback
            if large:
                self.large_requests.release()
            if len(raw) > LARGE_REQUEST_BYTES:
                # Received, decoded or not, it left megabytes in the heap: one
                # trim shortly after (at most one per 0.2 s, however many come).
                memory.give_back_soon()
            if principal_token is not None:
                unbind_principal(principal_token)
            self.end(outcome, started, span_token, log_token)

    def begin(self, metadata: dict[str, Any]) -> tuple[object | None, object]:
        """Counts the call in; continues the caller's trace (when no span is
        recorded) and binds the log context: the tokens that undo both."""
        self.started_total.inc()
        self.in_flight.inc()
        span_token = None
        if self.own_span:
            span_token = otel_context.attach(trace.set_span_in_context(telemetry.continue_trace(metadata)))
        request_id = metadata.get(REQUEST_ID_METADATA)
        if isinstance(request_id, str) and request_id:
            return span_token, logs.bind(method=self.rule.full_name, request_id=request_id[:_REQUEST_ID_MAX])
        return span_token, logs.bind(method=self.rule.full_name)

    def end(self, outcome: str, started: float, span_token: Any, log_token: Any) -> None:
        """The call's metrics and access line; its trace and log context undone."""
        duration = time.perf_counter() - started
        self.in_flight.dec()
        self.count(outcome).inc()
        self.handling_seconds.observe(duration)
        # method, account, request id and trace id come from the bound context.
        logs.info_line(access, "rpc", {"code": outcome, "duration_ms": round(duration * 1000, 3)})
        logs.unbind(log_token)
        if span_token is not None:
            otel_context.detach(span_token)

    def admit(self, metadata: dict[str, Any]) -> Principal:
        """The verified caller, allowed to call the method (and the service not shutting down)."""
        if self.calls.refusing:
            raise Unavailable("the service is shutting down; retry", reason="SHUTTING_DOWN")
        header = metadata.get("authorization")
        principal = self.verifier.verify_header(header if isinstance(header, str) else None)
        logs.bind(account_id=str(principal.account_id))  # undone with the call's log token
        self.rule.authorize(principal)
        return principal

    async def large_turn(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Waits for a large request's turn, bounded like the call itself."""
        remaining = context.time_remaining()
        try:
            async with asyncio.timeout(self.default_deadline if remaining is None else remaining):
                await self.large_requests.acquire()
        except TimeoutError:
            raise Unavailable(
                "too many large requests at once; retry", reason="LARGE_REQUESTS_BUSY"
            ) from None

    def checked(self, raw: bytes) -> Message:
        """The request decoded, every rule of its fields checked."""
        request = _decoded(self.decode, raw)
        found = violations(request)
        if b"\x00" in raw:  # the only way a string can hold NUL
            found += text_violations(request)
        if found:
            raise InvalidArgument(found)
        return request

    async def run(self, request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        """The handler's reply; what it created named in trailing metadata."""
        made: list[str] = []
        created_token = _created.set(made)
        try:
            if context.time_remaining() is None:
                # The caller set no deadline (grpcurl's default): ours bounds the work.
                try:
                    async with asyncio.timeout(self.default_deadline):
                        response = await self.inner(request, context)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"the call took longer than {self.default_deadline:g} s, the limit for calls "
                        "without a deadline"
                    ) from None
            else:
                response = await self.inner(request, context)
        finally:
            _created.reset(created_token)
        if made:
            context.set_trailing_metadata(((CREATED_METADATA, made[-1]),))
        return response


StreamHandler = Callable[[Message, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Message]]


class _StreamMethod(_Method):
    """A wrapped server-streaming method: admitted, decoded and checked like a
    unary one before its first message; its deadline (the caller's, else the
    runtime's default) covers the whole stream; an error, before or after
    messages were sent, ends the stream with its rich status. When the
    caller goes away the handler is cancelled where it waits."""

    def __init__(
        self,
        runtime: Runtime,
        rule: MethodRule,
        inner: StreamHandler,
        decode: Decoder,
        input_type: descriptor.Descriptor,
    ) -> None:
        super().__init__(runtime, rule, cast(Handler, inner), decode, input_type)
        self.stream_inner = inner
        service_name, _, method_name = rule.full_name.rpartition(".")
        self.labels = ("server_stream", service_name, method_name)
        self.started_total = metrics.GRPC_STARTED.labels(*self.labels)
        self.handling_seconds = metrics.GRPC_SECONDS.labels(*self.labels)
        self.handled = {"OK": metrics.GRPC_HANDLED.labels(*self.labels, "OK")}

    async def _within(self, stream: AsyncIterator[Message], deadline: float | None) -> AsyncIterator[Message]:
        """``stream``'s messages until ``deadline`` (loop time; None: the
        caller's own deadline rules). The timer runs only while the next
        message is awaited, never across a ``yield``: a cancellation must land
        in the stream's own await (where the domain saves what it has), not in
        gRPC's write of the previous message. Time spent writing to a slow
        reader counts too: it is checked before each message is awaited."""
        iterator = aiter(stream)
        try:
            while True:
                if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                    raise TimeoutError
                async with asyncio.timeout_at(deadline):
                    try:
                        response = await anext(iterator)
                    except StopAsyncIteration:
                        return
                yield response
        except TimeoutError:
            raise DeadlineExceeded(
                f"the stream took longer than {self.default_deadline:g} s, the limit for calls without a deadline"
            ) from None
        finally:
            await cast(Any, iterator).aclose()  # the stream's own clean-up, however this ends

    async def handle(  # type: ignore[override]  # a stream, not one reply
        self, raw: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Message]:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        self.calls.started()
        context.add_done_callback(cast(Any, self.calls.ended_with))
        span_token, log_token = self.begin(metadata)
        principal_token = None
        outcome = "OK"
        try:
            principal = self.admit(metadata)
            if len(raw) >= COUNTED_FROM_BYTES:
                check_wire(raw, self.input_type)
            request = self.checked(raw)
            principal_token = bind_principal(principal)
            remaining = context.time_remaining()
            deadline = (
                None if remaining is not None else asyncio.get_running_loop().time() + self.default_deadline
            )
            async for response in self._within(self.stream_inner(request, context), deadline):
                yield response
        except FlowPilotError as error:
            outcome = error.code.name
            traceback.clear_frames(error.__traceback__)
            await context.abort_with_status(to_grpc_status(error, domain=self.domain))
            raise
        except grpc.aio.AbortError:
            code = context.code()
            outcome = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise
        except (asyncio.CancelledError, GeneratorExit):
            remaining = context.time_remaining()
            outcome = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except Exception:
            outcome = "INTERNAL"
            log.exception("unhandled error in %s", self.rule.full_name)
            traceback.clear_frames(sys.exc_info()[2])
            await context.abort_with_status(
                internal_status(domain=self.domain, trace_id=logs.current_trace_id())
            )
            raise
        finally:
            if principal_token is not None:
                unbind_principal(principal_token)
            self.end(outcome, started, span_token, log_token)


def _decoded(decode: Decoder, raw: bytes) -> Message:
    try:
        return decode(raw)
    except DecodeError:
        # Truncated, nested past protobuf's depth limit, or a string that is not UTF-8.
        raise malformed_request() from None


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
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            found = self._inner.service(details)
            if found is None:
                return None  # not remembered: callers choose method names
            wrapped = self._wrapped[method] = self._runtime.wrap(method, found)
        return wrapped
