"""Assembles the sessions service: configuration, database, AI, settings client,
outbox delivery, stale-session sweep, server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flowpilot.library.v1 import library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core import clients
from services.core.ai import AI, make_ai
from services.core.config import SettingsClientConfig
from services.core.db import Database
from services.core.server import GrpcServer, Registration, credential_from
from services.sessions.knowledge import Library
from services.sessions.outbox import OutboxDelivery
from services.sessions.servicer import SessionsServicer
from services.sessions.sweep import StaleSessionSweep

DOMAIN = "sessions.flowpilot.internal"
SERVICE_NAME = sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"].full_name


class SessionsConfig(SettingsClientConfig):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    service_name: str = "sessions"
    port: int = 50051
    metrics_port: int = 9651
    library_address: str = "127.0.0.1:50052"
    # The copilot's template search: past this, it answers without templates.
    library_search_seconds: float = Field(default=2.0, gt=0, le=30)
    outbox_poll_seconds: float = 2.0
    outbox_base_backoff_seconds: float = 1.0
    outbox_max_backoff_seconds: float = 300.0
    # Attempts before an outbox row becomes a dead letter (listed and retried by team admins).
    outbox_max_attempts: int = Field(default=12, ge=1, le=1000)
    # How often the outbox's figures (backlog, oldest pending, dead letters) are read for metrics.
    outbox_stats_seconds: float = Field(default=15.0, gt=0, le=3600)
    # How often stale sessions are swept (per account: sessions.stale_after_hours).
    sweep_interval_seconds: float = Field(default=300.0, gt=0)


def build(
    config: SessionsConfig,
    db: Database,
    *,
    ai: AI | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GrpcServer:
    settings, settings_channel = clients.settings_reader(
        config.settings_address, ttl_seconds=config.settings_cache_seconds
    )
    library_channel = clients.channel(config.library_address)
    delivery = OutboxDelivery(
        db,
        library_pb2_grpc.LibraryServiceStub(library_channel),  # acts as the service, not the caller
        credential_from(config),
        poll_seconds=config.outbox_poll_seconds,
        base_backoff_seconds=config.outbox_base_backoff_seconds,
        max_backoff_seconds=config.outbox_max_backoff_seconds,
        max_attempts=config.outbox_max_attempts,
        stats_seconds=config.outbox_stats_seconds,
    )
    sweep = StaleSessionSweep(
        db, settings, credential_from(config), interval_seconds=config.sweep_interval_seconds, clock=clock
    )
    library = library_pb2_grpc.LibraryServiceStub(library_channel)
    servicer = SessionsServicer(
        db,
        ai or make_ai(),
        settings,
        outbox=delivery,
        library=Library(library, timeout_seconds=config.library_search_seconds),
        clock=clock,
    )

    async def close() -> None:
        await settings_channel.close()
        await library_channel.close()

    return GrpcServer(
        config=config,
        domain=DOMAIN,
        registrations=[
            Registration(
                SERVICE_NAME, lambda s: sessions_pb2_grpc.add_SessionsServiceServicer_to_server(servicer, s)
            )
        ],
        background=[delivery.runner, delivery.stats_runner, sweep.runner],
        database=db,
        on_stop=[close, db.dispose],
    )
