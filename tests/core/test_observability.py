"""Logs and metrics of real processes: a settings service and the gateway
(``python -m``), each with its metrics port.

Every line either writes is JSON with ``service`` (uvicorn's too); every RPC
and every HTTP request has one access line at INFO with its code or status,
duration, request id and trace id (and the account, for RPCs); tokens never
appear; ``/metrics`` moves with the calls, with the standard names and labels."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.core.auth import Role
from tests.support import Keys, RunDatabase, free_port, service_process_env

SETTINGS = "flowpilot.settings.v1.SettingsService"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert reply.status_code == 200
    return samples(reply.text)


def json_lines(raw: bytes) -> list[dict[str, Any]]:
    lines = [line for line in raw.decode().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return parsed


async def drain(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)


class Process:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr = bytearray()
        assert process.stderr is not None
        self._reader = asyncio.ensure_future(drain(process.stderr, self.stderr))

    async def stop(self) -> list[dict[str, Any]]:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        return json_lines(bytes(self.stderr))


async def spawn(module: str, env: dict[str, str]) -> Process:
    return Process(
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stderr=asyncio.subprocess.PIPE
        )
    )


@pytest.fixture
async def settings_process(
    database: RunDatabase, keys: Keys, tmp_path: Path
) -> AsyncIterator[tuple[int, int, Process]]:
    port, metrics_port = free_port(), free_port()
    env = service_process_env(
        database, keys, tmp_path, "settings", port, FLOWPILOT_METRICS_PORT=str(metrics_port)
    )
    process = await spawn("services.settings", env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30
            )
        yield port, metrics_port, process
    finally:
        await process.stop()


async def test_a_service_logs_one_access_line_per_rpc_and_counts_it(
    settings_process: tuple[int, int, Process], keys: Keys
) -> None:
    port, metrics_port, process = settings_process
    account = uuid.uuid4()
    token_md = keys.metadata(account_id=account, role=Role.VIEWER)
    before = await scrape(metrics_port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        for i in range(3):
            await stub.GetSetting(
                settings_pb2.GetSettingRequest(name="settings/notes.format"),
                metadata=(*token_md, ("x-request-id", f"req-ok-{i}")),
            )
        # A burst of refusals: each one a line, each one counted.
        for i in range(4):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.GetSetting(
                    settings_pb2.GetSettingRequest(name="settings/notes.format"),
                    metadata=(("authorization", "Bearer not-a-token"), ("x-request-id", f"req-bad-{i}")),
                )
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetSetting(settings_pb2.GetSettingRequest(name="settings/no.such"), metadata=token_md)
        assert missing.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        missing_code = missing.value.code().name
        with pytest.raises(grpc.aio.AioRpcError) as denied_role:
            await stub.ResetSetting(
                settings_pb2.ResetSettingRequest(name="settings/notes.format"), metadata=token_md
            )
        assert denied_role.value.code() == grpc.StatusCode.PERMISSION_DENIED

    after = await scrape(metrics_port)
    rpc = {"grpc_type": "unary", "grpc_service": SETTINGS, "grpc_method": "GetSetting"}

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("grpc_server_handled_total", **rpc, grpc_code="OK") == 3
    assert moved("grpc_server_handled_total", **rpc, grpc_code="UNAUTHENTICATED") == 4
    assert moved("grpc_server_handled_total", **rpc, grpc_code=missing_code) == 1
    assert (
        moved(
            "grpc_server_handled_total",
            **{**rpc, "grpc_method": "ResetSetting"},
            grpc_code="PERMISSION_DENIED",
        )
        == 1
    )
    assert moved("grpc_server_started_total", **rpc) == 8
    assert moved("grpc_server_handling_seconds_count", **rpc) == 8
    assert value(after, "grpc_server_handling_seconds_bucket", **rpc, le="+Inf") >= 8
    assert value(after, "grpc_server_in_flight_requests", grpc_service=SETTINGS) == 0
    for pool in ("settings.transactions", "settings.reads"):
        assert value(after, "db_client_connection_max", pool_name=pool) == 10
        assert (after.get(("db_client_connection_pending_requests", frozenset({("pool_name", pool)})))) == 0
    assert value(after, "db_client_connection_count", pool_name="settings.reads", state="idle") >= 1
    assert value(after, "flowpilot_database_ready", service="settings") == 1
    assert ("process_cpu_seconds_total", frozenset()) in after  # the client's standard collectors

    lines = await process.stop()
    assert lines and all(line.get("service") == "settings" for line in lines), lines[:3]
    access = [line for line in lines if line["logger"] == "flowpilot.access"]
    by_request = {line.get("request_id"): line for line in access}
    ok = by_request["req-ok-0"]
    assert ok["level"] == "INFO"
    assert ok["method"] == f"{SETTINGS}.GetSetting"
    assert ok["code"] == "OK" and ok["account_id"] == str(account)
    assert isinstance(ok["duration_ms"], float) and len(ok["trace_id"]) == 32
    assert [by_request[f"req-bad-{i}"]["code"] for i in range(4)] == ["UNAUTHENTICATED"] * 4
    assert "account_id" not in by_request["req-bad-0"]
    assert len(access) == 9
    raw = bytes(process.stderr).decode()
    token = token_md[0][1].removeprefix("Bearer ")
    assert token not in raw and "not-a-token" not in raw


async def test_the_gateway_logs_and_counts_every_request_in_json(
    settings_process: tuple[int, int, Process], keys: Keys
) -> None:
    port, _, _ = settings_process
    http_port, metrics_port = free_port(), free_port()
    env = {
        **service_process_env_for_gateway(),
        "FLOWPILOT_PORT": str(http_port),
        "FLOWPILOT_METRICS_PORT": str(metrics_port),
        "FLOWPILOT_SETTINGS_ADDRESS": f"127.0.0.1:{port}",
    }
    gateway = await spawn("gateway", env)
    account = uuid.uuid4()
    token = keys.token(account_id=account, role=Role.VIEWER)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            before = await scrape(metrics_port)
            auth = {"Authorization": f"Bearer {token}"}
            assert (
                await http.get("/v1/settings/notes.format", headers={**auth, "X-Request-Id": "gw-ok"})
            ).status_code == 200
            for i in range(3):
                assert (
                    await http.get("/v1/settings/notes.format", headers={"X-Request-Id": f"gw-401-{i}"})
                ).status_code == 401
            assert (await http.get("/v1/nothing/here", headers={"X-Request-Id": "gw-404"})).status_code == 404
            ready = str((await http.get("/readyz")).status_code)  # other backends are not running
            after = await scrape(metrics_port)
    finally:
        lines = await gateway.stop()

    route = "/v1/{name=settings/*}"

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("http_server_requests_total", method="GET", route=route, status="200") == 1
    assert moved("http_server_requests_total", method="GET", route=route, status="401") == 3
    assert moved("http_server_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("http_server_requests_total", method="GET", route="/readyz", status=ready) == 1
    assert moved("http_server_request_duration_seconds_count", method="GET", route=route) == 4
    assert value(after, "http_server_active_requests") == 0
    assert not any("nothing/here" in str(key) for key in after)  # no client path in a label

    assert lines and all(line.get("service") == "gateway" for line in lines), lines[:3]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's lines, in JSON
    access = {line.get("request_id"): line for line in lines if line["logger"] == "flowpilot.access"}
    assert access["gw-ok"]["status"] == 200 and access["gw-ok"]["route"] == route
    assert len(access["gw-ok"]["trace_id"]) == 32 and access["gw-ok"]["level"] == "INFO"
    assert [access[f"gw-401-{i}"]["status"] for i in range(3)] == [401] * 3
    assert access["gw-404"]["route"] == "unmatched"
    assert token not in json.dumps(lines)


def service_process_env_for_gateway() -> dict[str, str]:
    import os

    return {**os.environ, "FLOWPILOT_HOST": "127.0.0.1"}
