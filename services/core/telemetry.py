"""OpenTelemetry for a process: one tracer provider, exporter by configuration.

``OTEL_EXPORTER_OTLP_ENDPOINT`` set: spans go to that OTLP/gRPC collector.
``FLOWPILOT_TRACE_CONSOLE=1``: spans are printed (debugging). Otherwise spans
are not recorded (sampled off), but still have ids, so logs carry trace ids
and context still propagates. gRPC server/client spans come from the maintained
``opentelemetry-instrumentation-grpc`` interceptors, database spans from the
asyncpg instrumentation (the SQLAlchemy one does not support SQLAlchemy 2.1
yet). W3C trace context is the propagator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

_provider: TracerProvider | None = None
_exporting = False
_ids = RandomIdGenerator()


def setup(service_name: str, *, processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Creates the process's tracer provider once; later calls return it.

    ``processors`` lets tests attach an in-memory exporter.
    """
    global _provider, _exporting  # one provider per process is OpenTelemetry's own model
    if _provider is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        console = os.environ.get("FLOWPILOT_TRACE_CONSOLE") == "1"
        exporting = bool(endpoint) or console or bool(processors)
        # Spans nobody exports are not recorded (they cost ~15% of a simple
        # RPC); their ids still exist, so logs carry trace ids and context
        # still propagates. OTEL_TRACES_SAMPLER, when set, decides instead.
        sampler = None if exporting or os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(ALWAYS_OFF)
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}), sampler=sampler)
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if console:
            _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(_provider)
        _exporting = exporting
    for processor in processors or []:
        _provider.add_span_processor(processor)
        _exporting = True
    return _provider


def shutdown() -> None:
    """Sends the spans still buffered (before the process ends)."""
    if _provider is not None:
        _provider.shutdown()


def exporting() -> bool:
    """Whether this process's spans go anywhere."""
    return _exporting


def instrument_database() -> None:
    """Database spans for every asyncpg statement of the process (idempotent).

    Only when spans are exported: a database span propagates nothing, so
    unexported it would be pure cost (~15% of a simple read's CPU).
    """
    if not _exporting:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def continue_trace(carrier: Mapping[str, str | bytes]) -> trace.Span:
    """A span that continues the caller's W3C trace context from ``carrier``
    (or starts a trace), for a process whose spans go nowhere.

    It is never recorded, but has a span id of its own and keeps the caller's
    trace id, sampled flag and trace state, so logs carry the trace and a
    sampling decision made upstream reaches the services called next. Built
    directly rather than through the tracer: its parent-based sampler
    records a span whose caller is sampled although nothing exports it
    (12 µs per RPC), and a sampler that drops every span would also clear
    the sampled flag passed on.
    """
    parent = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    if not parent.is_valid:
        return trace.NonRecordingSpan(
            trace.SpanContext(_ids.generate_trace_id(), _ids.generate_span_id(), is_remote=False)
        )
    return trace.NonRecordingSpan(
        trace.SpanContext(
            parent.trace_id,
            _ids.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
    )
