"""Structured (JSON) logs with the request's context.

Each record carries the trace and span id of the current OpenTelemetry span,
and the account and RPC method of the request being served. Tokens, secrets
and note bodies are never passed to the logger, so they never appear here.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

_request: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("flowpilot_log_context")


def bind(**fields: str) -> contextvars.Token[dict[str, str]]:
    """Adds fields to every record logged in the current request."""
    merged = {**_request.get({}), **fields}
    return _request.set(merged)


def unbind(token: contextvars.Token[dict[str, str]]) -> None:
    _request.reset(token)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update(_request.get({}))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", service: str = "flowpilot") -> None:
    """Installs the JSON handler on the root logger (once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("flowpilot").info("logging configured", extra={"fields": {"service": service}})
