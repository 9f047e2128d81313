"""Fixtures shared by every test: the run's database, keys, services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.core import telemetry
from services.core.ai import make_ai
from services.core.ai.offline import OfflineBackend
from services.core.server import GrpcServer
from services.library.service import LibraryConfig
from services.library.service import build as build_library
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from services.settings.service import SettingsConfig, build
from services.walks.service import WalksConfig
from services.walks.service import build as build_walks
from tests.support import AUDIENCE, ISSUER, PAGE_TOKEN_SECRET, Keys, RunDatabase, private_database, running


@pytest.fixture(scope="session", autouse=True)
def spans() -> InMemorySpanExporter:
    """Every span of the run, kept in memory (the process's one tracer provider)."""
    exporter = InMemorySpanExporter()
    telemetry.setup("flowpilot-tests", processors=[SimpleSpanProcessor(exporter)])
    telemetry.instrument_database()
    return exporter


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[RunDatabase]:
    async with private_database() as db:
        yield db


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture(scope="session")
def service_keys() -> dict[str, Keys]:
    """Each service's own signing key pair (for its service tokens)."""
    return {name: Keys.generate() for name in ("sessions", "library", "settings", "walks")}


@pytest.fixture
def account() -> uuid.UUID:
    """A fresh account per test: tests never see each other's rows."""
    return uuid.uuid4()


def service_config_kwargs(
    database: RunDatabase, keys: Keys, schema: str, service_keys: dict[str, Keys] | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if service_keys:
        extra["service_public_keys"] = {name: k.public_pem for name, k in service_keys.items()}
        extra["service_private_key"] = service_keys[schema].private_pem
    return {
        **extra,
        "database_url": database.runtime_url(schema),
        "jwt_public_key": keys.public_pem,
        "page_token_secrets": [PAGE_TOKEN_SECRET],
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "host": "127.0.0.1",
        "port": 0,
        # Stopping takes no time: no drain before new calls are refused, and
        # calls still running are cut off (a test of the drain sets its own).
        "shutdown_drain_seconds": 0,
        "shutdown_grace_seconds": 0,
    }


@pytest.fixture(scope="session")
async def settings_address(
    database: RunDatabase, keys: Keys, service_keys: dict[str, Keys]
) -> AsyncIterator[str]:
    config = SettingsConfig(**service_config_kwargs(database, keys, "settings", service_keys))
    async with running(build, config, pool_size=8) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
async def settings_channel(settings_address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(settings_address) as channel:
        yield channel


class CountingBackend(OfflineBackend):
    """The offline backend, counting calls per ticket (to prove caching)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _count(self, ticket: str) -> None:
        self.calls[ticket] = self.calls.get(ticket, 0) + 1

    async def suggest_fix(self, ctx, *, tier, prompts):
        self._count(ctx.ticket_ref)
        return await super().suggest_fix(ctx, tier=tier, prompts=prompts)

    async def write_resolution_note(self, ctx, *, fmt, tier, prompts):
        self._count(ctx.ticket_ref)
        return await super().write_resolution_note(ctx, fmt=fmt, tier=tier, prompts=prompts)

    async def write_escalation_package(self, ctx, *, fmt, tier, prompts):
        self._count(ctx.ticket_ref)
        return await super().write_escalation_package(ctx, fmt=fmt, tier=tier, prompts=prompts)


@pytest.fixture(scope="session")
def ai_backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture(scope="session")
async def sessions_server(
    database: RunDatabase,
    keys: Keys,
    settings_address: str,
    library_address: str,
    ai_backend: CountingBackend,
    service_keys: dict[str, Keys],
) -> AsyncIterator[GrpcServer]:
    config = SessionsConfig(
        **service_config_kwargs(database, keys, "sessions", service_keys),
        settings_address=settings_address,
        settings_cache_seconds=0,
        library_address=library_address,
        outbox_poll_seconds=0.2,
        outbox_base_backoff_seconds=0.05,
        outbox_max_backoff_seconds=0.3,
    )
    async with running(build_sessions, config, ai=make_ai(backend=ai_backend)) as server:
        yield server


@pytest.fixture
async def only_this_replica_delivers(sessions_server: GrpcServer) -> AsyncIterator[None]:
    """Pauses the shared sessions server's outbox worker for a test that runs
    a sessions server of its own: both read the same outbox, and the shared
    one would deliver the test's rows to its own (running) library, as a
    replica should."""
    for work in sessions_server.background:
        await work.stop()
    yield
    for work in sessions_server.background:
        work.start()


@pytest.fixture(scope="session")
def sessions_address(sessions_server: GrpcServer) -> str:
    return f"127.0.0.1:{sessions_server.port}"


@pytest.fixture
async def sessions_channel(sessions_address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(sessions_address) as channel:
        yield channel


@pytest.fixture(scope="session")
async def gateway_url(
    settings_address: str, sessions_address: str, library_address: str, walks_address: str
) -> AsyncIterator[str]:
    from tests.gateway.harness import serve_gateway

    backends = {
        "flowpilot.settings.v1": settings_address,
        "flowpilot.sessions.v1": sessions_address,
        "flowpilot.library.v1": library_address,
        "flowpilot.walks.v1": walks_address,
    }
    async with serve_gateway(backends=backends) as url:
        yield url


@pytest.fixture(scope="session")
async def library_address(
    database: RunDatabase, keys: Keys, settings_address: str, service_keys: dict[str, Keys]
) -> AsyncIterator[str]:
    config = LibraryConfig(
        **service_config_kwargs(database, keys, "library", service_keys),
        settings_address=settings_address,
        settings_cache_seconds=0,
    )
    async with running(build_library, config, pool_size=10, ai=make_ai(backend=OfflineBackend())) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
async def library_channel(library_address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(library_address) as channel:
        yield channel


class FakeClock:
    """The clock at the edge: tests move time instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class SwitchableBackend(OfflineBackend):
    """Offline, except that a test may put another backend in front."""

    def __init__(self) -> None:
        self.override: Any = None

    async def build_decision_tree(self, problem, *, tier, prompts):  # type: ignore[no-untyped-def]
        if self.override is not None:
            return await self.override.build_decision_tree(problem, tier=tier, prompts=prompts)
        return await super().build_decision_tree(problem, tier=tier, prompts=prompts)


@pytest.fixture(scope="session")
def walks_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def walks_backend() -> SwitchableBackend:
    return SwitchableBackend()


@pytest.fixture(autouse=True)
def _fresh_fakes(ai_backend: CountingBackend, walks_backend: SwitchableBackend) -> None:
    """The session's fakes as new before every test: no count and no backend
    put in front carried over from another test (none needs resetting by hand)."""
    ai_backend.calls.clear()
    walks_backend.override = None


@pytest.fixture(scope="session")
async def walks_address(
    database: RunDatabase,
    keys: Keys,
    settings_address: str,
    sessions_address: str,
    service_keys: dict[str, Keys],
    walks_clock: FakeClock,
    walks_backend: SwitchableBackend,
) -> AsyncIterator[str]:
    config = WalksConfig(
        **service_config_kwargs(database, keys, "walks", service_keys),
        settings_address=settings_address,
        sessions_address=sessions_address,
        settings_cache_seconds=0,
        sweep_interval_seconds=3600,
    )
    async with running(
        build_walks, config, pool_size=10, ai=make_ai(backend=walks_backend), clock=walks_clock
    ) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
async def walks_channel(walks_address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(walks_address) as channel:
        yield channel
