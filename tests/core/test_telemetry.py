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

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc

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
