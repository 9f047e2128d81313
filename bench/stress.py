"""Stress measurements for ``make bench``.

- **Memory under requests at the message limit.** For each service, its
  heaviest request (the largest valid one, and a hostile one: the same 4 MiB
  spent on as many tiny repeated elements as fit, which decodes into the most
  objects), sent 8 at a time, 3 rounds; the service's peak RSS is sampled
  every 10 ms meanwhile. The ceiling is 200 MB per process.
- **Noisy neighbour.** Another tenant's GetWalk p50/p99 alone, then while 14
  escalations of 100-note walks run at once in the first tenant (each a
  session created with its facts in one call to the sessions service).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psutil
from flowpilot.api.v1 import tickets_pb2
from flowpilot.library.v1 import library_pb2
from flowpilot.sessions.v1 import sessions_pb2
from flowpilot.settings.v1 import settings_pb2
from flowpilot.walks.v1 import walks_pb2, walks_pb2_grpc
from google.protobuf import struct_pb2
from google.protobuf.message import Message

LIMIT = 4 * 1024 * 1024  # the services' default message limit
AT_ONCE = 8
ROUNDS = 3

SESSIONS, LIBRARY, SETTINGS, WALKS = (
    "/flowpilot.sessions.v1.SessionsService/",
    "/flowpilot.library.v1.LibraryService/",
    "/flowpilot.settings.v1.SettingsService/",
    "/flowpilot.walks.v1.WalksService/",
)


def _fill(build: Callable[[int], Message], budget: int = LIMIT - 1024) -> Message:
    """``build(n)`` with the largest ``n`` whose serialized size fits ``budget``
    (``n`` identical elements: the size grows by the same step each)."""
    base = len(build(0).SerializeToString())
    step = len(build(1).SerializeToString()) - base
    return build((budget - base) // step)


def largest_flow(*, cycle: bool = False) -> walks_pb2.CreateFlowRequest:
    """A valid flow at the limit: 500 nodes of 2,000 characters with 20 options
    each (4,128,966 bytes); with ``cycle``, refused once decoded (the last
    node leads back to the first)."""

    def node_id(i: int) -> str:
        return f"n{i:03d}".ljust(100, "-")

    nodes = [
        walks_pb2.Node(
            id=node_id(i),
            kind=walks_pb2.NODE_KIND_QUESTION,
            text="x" * 2000,
            options=[
                walks_pb2.Option(label=f"{o:02d}".ljust(200, "o"), next=node_id(i + 1)) for o in range(20)
            ],
        )
        for i in range(499)
    ]
    last = walks_pb2.Node(id=node_id(499), kind=walks_pb2.NODE_KIND_RESOLUTION, text="x" * 2000)
    if cycle:
        last.kind = walks_pb2.NODE_KIND_QUESTION
        last.options.add(label="back", next=node_id(0))
    nodes.append(last)
    tree = walks_pb2.Tree(root=node_id(0), nodes=nodes)
    return walks_pb2.CreateFlowRequest(flow=walks_pb2.Flow(display_name="largest flow", tree=tree))


def heaviest_requests() -> dict[str, list[tuple[str, str, bytes]]]:
    """Per service: (label, method path, request) of the requests measured."""
    hostile_flow = _fill(
        lambda n: walks_pb2.CreateFlowRequest(
            flow=walks_pb2.Flow(display_name="t", tree=walks_pb2.Tree(root="a", nodes=[walks_pb2.Node()] * n))
        )
    )
    hostile_session = _fill(
        lambda n: sessions_pb2.CreateSessionRequest(
            session=sessions_pb2.Session(title="t"), facts=[sessions_pb2.Fact()] * n
        )
    )
    hostile_template = _fill(
        lambda n: library_pb2.CreateScriptTemplateRequest(
            script_template=library_pb2.ScriptTemplate(display_name="t", tags=[""] * n)
        )
    )
    hostile_setting = _fill(
        lambda n: settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/notes.format",
                value=struct_pb2.Value(
                    list_value=struct_pb2.ListValue(values=[struct_pb2.Value(number_value=0)] * n)
                ),
            )
        )
    )
    return {
        "walks": [
            ("largest valid flow", WALKS + "CreateFlow", largest_flow().SerializeToString()),
            (
                "largest flow, with a cycle",
                WALKS + "CreateFlow",
                largest_flow(cycle=True).SerializeToString(),
            ),
            ("4 MiB of empty nodes", WALKS + "CreateFlow", hostile_flow.SerializeToString()),
        ],
        "sessions": [
            ("4 MiB of empty facts", SESSIONS + "CreateSession", hostile_session.SerializeToString())
        ],
        "library": [
            ("4 MiB of empty tags", LIBRARY + "CreateScriptTemplate", hostile_template.SerializeToString())
        ],
        "settings": [("4 MiB list value", SETTINGS + "UpdateSetting", hostile_setting.SerializeToString())],
    }


class _PeakRss:
    """Samples a process's RSS (with its workers) every 10 ms while running."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self._process.memory_info().rss + sum(
                    c.memory_info().rss for c in self._process.children(recursive=True)
                )
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.01)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _send(target: str, method: str, request: bytes, metadata: list[tuple[str, str]]) -> dict[str, int]:
    codes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(
        target,
        options=[("grpc.max_send_message_length", LIMIT + 1024), ("grpc.max_receive_message_length", LIMIT)],
    ) as channel:
        call: Any = channel.unary_unary(method)

        async def one() -> str:
            try:
                await call(request, metadata=metadata, timeout=120)
                return "OK"
            except grpc.aio.AioRpcError as error:
                return str(error.code().name)

        for _ in range(ROUNDS):
            for code in await asyncio.gather(*(one() for _ in range(AT_ONCE))):
                codes[code] = codes.get(code, 0) + 1
    return codes


def memory_at_the_limit(
    ports: dict[str, int], pids: dict[str, int], metadata: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Per request measured: its size, the answers, and the service's RSS before and at peak."""
    results: dict[str, dict[str, Any]] = {}
    for service, requests in heaviest_requests().items():
        for label, method, request in requests:
            before = psutil.Process(pids[service]).memory_info().rss
            with _PeakRss(pids[service]) as rss:
                codes = asyncio.run(_send(f"127.0.0.1:{ports[service]}", method, request, metadata))
            results[f"{service}: {label}"] = {
                "bytes": len(request),
                "codes": codes,
                "rss_before": before,
                "peak_rss": rss.peak,
            }
    return results


async def _percentiles(call: Callable[[], Awaitable[Any]], until: Callable[[], bool]) -> dict[str, float]:
    times: list[float] = []
    while not until() or not times:
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "calls": len(times),
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


async def _noisy_neighbour(
    walks: str, escalating: list[tuple[str, str]], reading: list[tuple[str, str]]
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(walks) as channel:
        stub: Any = walks_pb2_grpc.WalksServiceStub(channel)

        async def start(metadata: list[tuple[str, str]], notes: int) -> str:
            walk = (
                await stub.StartWalk(
                    walks_pb2.StartWalkRequest(
                        ticket_ref=f"T-{uuid.uuid4().hex[:8]}",
                        ticket_kind=tickets_pb2.TICKET_KIND_PSA,
                        kind=walks_pb2.WALK_KIND_ADHOC,
                    ),
                    metadata=metadata,
                    timeout=30,
                )
            ).walk
            for n in range(notes):
                await stub.AddWalkNote(
                    walks_pb2.AddWalkNoteRequest(name=walk.name, text=f"note {n}: checked the tunnel"),
                    metadata=metadata,
                    timeout=30,
                )
            return str(walk.name)

        mine = await start(reading, 0)
        to_escalate = [await start(escalating, 100) for _ in range(14)]

        async def read() -> None:
            await stub.GetWalk(walks_pb2.GetWalkRequest(name=mine), metadata=reading, timeout=30)

        later = time.perf_counter() + 5
        alone = await _percentiles(read, lambda: time.perf_counter() > later)

        async def escalate(name: str) -> str:
            try:
                await stub.EscalateWalk(
                    walks_pb2.EscalateWalkRequest(
                        name=name,
                        reason="the tunnel drops for every user",
                        category=walks_pb2.ESCALATION_CATEGORY_NEEDS_ACCESS,
                    ),
                    metadata=escalating,
                    timeout=60,
                )
                return "OK"
            except grpc.aio.AioRpcError as error:
                return str(error.code().name)

        escalations = asyncio.gather(*(escalate(name) for name in to_escalate))
        during = await _percentiles(read, escalations.done)
        codes: dict[str, int] = {}
        for code in await escalations:
            codes[code] = codes.get(code, 0) + 1
        return {"alone": alone, "during": during, "escalations": codes}


def noisy_neighbour(
    walks_port: int, escalating: list[tuple[str, str]], reading: list[tuple[str, str]]
) -> dict[str, Any]:
    """Another tenant's GetWalk while 14 escalations of 100-note walks run."""
    return asyncio.run(_noisy_neighbour(f"127.0.0.1:{walks_port}", escalating, reading))
