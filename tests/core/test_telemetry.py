"""What a process records when nothing exports its spans, and when something does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from services.core import telemetry

telemetry.setup("probe")
telemetry.instrument_database()
with trace.get_tracer("probe").start_as_current_span("rpc") as span:
    context = span.get_span_context()
    print("PROBE", json.dumps({
        "recording": span.is_recording(),
        "trace_id_valid": context.trace_id != 0,
        "database_instrumented": AsyncPGInstrumentor().is_instrumented_by_opentelemetry,
    }))
"""


def _probe(**env: str) -> dict[str, bool]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWPILOT_TRACE"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    result: dict[str, bool] = json.loads(line.removeprefix("PROBE "))
    return result


@pytest.mark.parametrize(
    ("env", "exporting"),
    [({}, False), ({"FLOWPILOT_TRACE_CONSOLE": "1"}, True)],
    ids=["nothing-exports", "console-exporter"],
)
def test_spans_and_database_instrumentation_follow_the_exporter(env: dict[str, str], exporting: bool) -> None:
    result = _probe(**env)
    # Trace ids exist either way: logs carry them and context propagates.
    assert result["trace_id_valid"]
    assert result["recording"] is exporting
    assert result["database_instrumented"] is exporting
