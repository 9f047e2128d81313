"""Load generation, in processes of its own (never the servers').

A load is a set of concurrent tasks; each task cycles through its own list
of calls back to back for a fixed time, and every call's latency is kept.
Calls are gRPC (pre-serialised requests on a shared channel), HTTP (aiohttp)
or raw asyncpg calls of a tenant read function (the database ceiling).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

WARMUP = 0.5  # seconds of each run whose latencies are not kept

Call = list[Any]  # grpc: [path, payload bytes]; http: [method, url, json body | None]; sql: [query, args]


async def _grpc(spec: dict[str, Any]) -> list[float]:
    import grpc

    latencies: list[float] = []
    metadata = tuple(tuple(m) for m in spec.get("metadata", []))
    async with grpc.aio.insecure_channel(spec["target"]) as channel:
        stubs: dict[str, Any] = {}

        def stub(path: str) -> Any:
            if path not in stubs:
                stubs[path] = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            return stubs[path]

        await _drive(spec, latencies, lambda call: stub(call[0])(call[1], metadata=metadata, timeout=30))
    return latencies


async def _http(spec: dict[str, Any]) -> list[float]:
    # aiohttp rather than httpx: httpx's connection pool costs the load
    # process more CPU per request as connections grow, which showed up as
    # client-side queueing (tails) at concurrency 64 even against an empty handler.
    import aiohttp

    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        headers=spec.get("headers", {}), connector=connector, timeout=timeout
    ) as client:

        async def call(c: Call) -> None:
            async with client.request(c[0], c[1], json=c[2]) as response:
                body = await response.read()
                if response.status >= 400:
                    raise RuntimeError(f"{c[0]} {c[1]}: {response.status} {body[:200]!r}")

        await _drive(spec, latencies, call)
    return latencies


async def nothing_to_reset(conn: Any) -> None:
    """asyncpg pool reset: a tenant read leaves nothing behind to reset."""
    return None


async def _sql(spec: dict[str, Any]) -> list[float]:
    import asyncpg

    latencies: list[float] = []
    size = min(spec["concurrency"], 16)  # the server's connection limit is shared with the suite
    # No reset round trip on release: a tenant read leaves nothing behind (as in the services).
    pool = await asyncpg.create_pool(spec["dsn"], min_size=size, max_size=size, reset=nothing_to_reset)
    account = uuid.UUID(spec["account"])

    async def call(c: Call) -> None:
        # A tenant read function: the tenant is its first argument, set in its own transaction.
        async with pool.acquire() as conn:
            await conn.fetch(c[0], account, *c[1])

    try:
        await _drive(spec, latencies, call)
    finally:
        await pool.close()
    return latencies


async def _drive(spec: dict[str, Any], latencies: list[float], do: Any) -> None:
    tasks: list[list[Call]] = spec["tasks"]
    deadline = time.perf_counter() + spec["duration"]
    warmup = spec.get("warmup", WARMUP)

    async def worker(calls: list[Call]) -> None:
        i = 0
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await do(calls[i % len(calls)])
            if t0 - started >= warmup:
                latencies.append(time.perf_counter() - t0)
            i += 1

    await asyncio.gather(*(worker(tasks[i % len(tasks)]) for i in range(spec["concurrency"])))


def run(spec: dict[str, Any]) -> list[float]:
    """Entry point in a load process: every latency after the warm-up, in seconds."""
    runner = {"grpc": _grpc, "http": _http, "sql": _sql}[spec["kind"]]
    return asyncio.run(runner(spec))


def summarise(latencies: list[float], seconds: float) -> dict[str, Any]:
    if not latencies:
        return {"count": 0, "rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "count": len(ordered),
        "rps": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
    }
