"""What a process records when nothing exports its spans, and when something does."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from opentelemetry import propagate, trace

from services.core import telemetry
from services.core.auth import Role
from tests.support import Keys, RunDatabase, free_port, service_process_env

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


async def test_a_service_that_exports_nothing_still_continues_the_callers_trace(
    database: RunDatabase, keys: Keys, tmp_path: Path
) -> None:
    """Without an exporter no server interceptor is installed; the runtime
    continues the caller's W3C context itself, so every log line of the RPC
    carries the caller's trace id (and a span id of its own)."""
    port = free_port()
    env = service_process_env(database, keys, tmp_path, "settings", port, FLOWPILOT_LOG_LEVEL="DEBUG")
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "FLOWPILOT_TRACE"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.settings", env=env, stderr=asyncio.subprocess.PIPE
    )
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    md = keys.metadata(account_id=uuid.uuid4(), role=Role.VIEWER)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            request = settings_pb2.GetSettingRequest(name="settings/notes.format")
            await stub.GetSetting(
                request,
                metadata=(*md, ("traceparent", f"00-{caller_trace}-{caller_span}-01")),
                wait_for_ready=True,
                timeout=30,
            )
            await stub.GetSetting(request, metadata=md, timeout=10)  # no caller context
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert stderr is not None
    lines = [json.loads(x) for x in stderr.decode().splitlines() if x.startswith("{")]
    rpcs = [x for x in lines if x["message"] == "rpc" and x.get("method", "").endswith("GetSetting")]
    assert len(rpcs) == 2, stderr.decode()[-2000:]
    continued, fresh = rpcs
    assert continued["trace_id"] == caller_trace
    assert continued["span_id"] != caller_span
    assert re.fullmatch(r"[0-9a-f]{32}", fresh["trace_id"]) and int(fresh["trace_id"], 16) != 0
    assert fresh["trace_id"] != caller_trace


@pytest.mark.parametrize("flags", ["01", "00"], ids=["sampled", "not-sampled"])
def test_continue_trace_keeps_the_callers_trace_flags_and_state(flags: str) -> None:
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    span = telemetry.continue_trace(
        {"traceparent": f"00-{caller_trace}-{caller_span}-{flags}", "tracestate": "vendor=abc"}
    )
    context = span.get_span_context()
    assert not span.is_recording()
    assert format(context.trace_id, "032x") == caller_trace
    assert format(context.span_id, "016x") != caller_span and context.span_id != 0
    assert context.trace_flags.sampled is (flags == "01")
    assert context.trace_state.get("vendor") == "abc"
    # What a call made under it sends on: the same trace, this span as parent, the same decision.
    sent: dict[str, str] = {}
    propagate.inject(sent, context=trace.set_span_in_context(span))
    assert sent["traceparent"] == f"00-{caller_trace}-{context.span_id:016x}-{flags}"


@pytest.mark.parametrize(
    "carrier",
    [{}, {"traceparent": "not a trace context"}, {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}],
    ids=["none", "malformed", "all-zero trace id"],
)
def test_continue_trace_starts_a_trace_without_a_valid_caller_context(carrier: dict[str, Any]) -> None:
    first, second = (telemetry.continue_trace(carrier).get_span_context() for _ in range(2))
    assert first.is_valid and second.is_valid
    assert first.trace_id != second.trace_id
    assert not first.trace_flags.sampled
