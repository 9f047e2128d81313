"""Structured (JSON) logs with the request's context.

Each record carries the process's service name, the trace and span id of the
current OpenTelemetry span, and the account, RPC method and request id of the
request being served. Tokens, secrets and note bodies are never passed to the
logger; should one slip into a message, a string field or an exception, the
formatter redacts it with FlowPilot's own rules (``services.core.sensitive``:
the same rules notes use, without detect-secrets' plugins, whose import
would cost the gateway 18 MB and 130 ms). Fields the services fill
themselves with ids and codes are not scanned; a message seen before is
looked up, not scanned again (about 1 µs an access line; 15 to 90 µs for a
message never seen).
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import time
from collections.abc import Mapping

from opentelemetry import trace

from services.core import sensitive

_request: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("flowpilot_log_context")


def bind(**fields: str) -> contextvars.Token[dict[str, str]]:
    """Adds fields to every record logged in the current request."""
    merged = {**_request.get({}), **fields}
    return _request.set(merged)


def unbind(token: contextvars.Token[dict[str, str]]) -> None:
    _request.reset(token)


def current_request_id() -> str | None:
    """The request id of the request being served (bound by the runtime), if any."""
    return _request.get({}).get("request_id")


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# Fields only the services fill, with ids, names and numbers: never scanned.
_TRUSTED = frozenset(
    {"method", "code", "status", "route", "duration_ms", "trace_id", "span_id", "account_id"}
)
# Ids (UUIDs, hex trace ids) hold nothing the rules could find: not scanned.
_ID = re.compile(r"[0-9a-fA-F-]{8,64}")


@functools.lru_cache(maxsize=2048)
def _redacted(text: str) -> str:
    return sensitive.redact(text)


def clean(value: str) -> str:
    """``value`` as a log line may carry it: secrets redacted."""
    if len(value) > 512:
        return sensitive.redact(value)
    if _ID.fullmatch(value):
        return value
    return _redacted(value)


def _cleaned(fields: Mapping[str, object]) -> dict[str, object]:
    return {
        key: clean(value) if isinstance(value, str) and key not in _TRUSTED else value
        for key, value in fields.items()
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, the
    trace and span ids of the current span, the request's bound fields and
    the record's own (``extra={"fields": {...}}``)."""

    def __init__(self, service: str = "flowpilot") -> None:
        super().__init__()
        self.service = service
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # strftime once per second rather than a datetime per record.
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": clean(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        bound = _request.get(None)
        if bound:
            entry.update(_cleaned(bound))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(_cleaned(extra))
        if record.exc_info:
            entry["exception"] = sensitive.redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


# Libraries whose loggers bring handlers of their own (uvicorn's dictConfig):
# their records go through the root's JSON handler instead.
_ADOPTED = ("uvicorn", "uvicorn.error", "asyncio")
# uvicorn's own access line would repeat the gateway's, with the client's
# address and raw query: it stays off.
_SILENCED = ("uvicorn.access",)


def info_line(logger: logging.Logger, message: str, fields: dict[str, object]) -> None:
    """Logs ``message`` with ``fields`` at INFO, skipping the caller lookup (a
    stack walk) that no JSON line prints: the access lines' cheap path."""
    if logger.isEnabledFor(logging.INFO):
        logger.handle(
            logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None, None, {"fields": fields})
        )


def configure(level: str = "INFO", service: str = "flowpilot") -> None:
    """Installs the JSON handler on the root logger (once per process); every
    record, uvicorn's included, carries ``service``."""
    # What the JSON lines never print, records need not look up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _ADOPTED:
        adopted = logging.getLogger(name)
        adopted.handlers[:] = []
        adopted.propagate = True
    for name in _SILENCED:
        silenced = logging.getLogger(name)
        silenced.handlers[:] = []
        silenced.propagate = False
    logging.getLogger("flowpilot").info("logging configured", extra={"fields": {"level": level.upper()}})
