"""The trace of an HTTP request through the gateway.

When the process exports spans (``services.core.telemetry.exporting()``),
OpenTelemetry's own ASGI middleware and gRPC client interceptors record the
gateway's server and client spans. When it does not, every span is sampled
off, and those two would record nothing at a cost of about a fifth of the
gateway's CPU per request; then the gateway only continues the trace:
``begin`` takes the caller's ``traceparent`` (or starts a trace), makes
a non-recording span of it current for the request (its ids are in the log
lines), and ``inject`` passes it on to the services as gRPC metadata, so one
request is still one trace across the suite.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads a request header (lowercase name) from ASGI's raw header list."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


_TRACER = trace.get_tracer("gateway.tracing")
Continued = tuple[Token[Context], trace.Span]


def begin(headers: list[tuple[bytes, bytes]], method: str) -> Continued:
    """Makes the request's trace context current: a server span that records
    nothing (use OpenTelemetry's middleware to record), child of the caller's
    ``traceparent`` or the root of a new trace. ``end`` it when answered."""
    parent = propagate.extract(headers, getter=_GETTER)
    span = _TRACER.start_span(method, context=parent, kind=trace.SpanKind.SERVER)
    return context.attach(trace.set_span_in_context(span, parent)), span


def end(continued: Continued) -> None:
    token, span = continued
    context.detach(token)
    span.end()


def inject(metadata: list[tuple[str, str]]) -> None:
    """Adds the current trace context (``traceparent``, ``tracestate``) to gRPC metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata.extend(carrier.items())
