"""Assembles the walks service: configuration, database, AI, clients, sweep, server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flowpilot.sessions.v1 import sessions_pb2_grpc
from flowpilot.walks.v1 import walks_pb2, walks_pb2_grpc
from pydantic_settings import SettingsConfigDict

from services.core import clients
from services.core.ai import AI, make_ai
from services.core.config import SettingsClientConfig
from services.core.db import Database
from services.core.server import GrpcServer, Registration, credential_from
from services.walks.escalation import SessionsEscalator
from services.walks.servicer import WalksServicer
from services.walks.sweep import StaleWalkSweep

DOMAIN = "walks.flowpilot.internal"
SERVICE_NAME = walks_pb2.DESCRIPTOR.services_by_name["WalksService"].full_name


class WalksConfig(SettingsClientConfig):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    service_name: str = "walks"
    port: int = 50054
    metrics_port: int = 9654
    sessions_address: str = "127.0.0.1:50051"
    sweep_interval_seconds: float = 300.0


def build(
    config: WalksConfig,
    db: Database,
    *,
    ai: AI | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GrpcServer:
    settings, settings_channel = clients.settings_reader(
        config.settings_address, ttl_seconds=config.settings_cache_seconds
    )
    sessions_channel = clients.channel(config.sessions_address)
    sweep = StaleWalkSweep(
        db, settings, credential_from(config), interval_seconds=config.sweep_interval_seconds, clock=clock
    )
    servicer = WalksServicer(
        db,
        ai or make_ai(),
        settings,
        SessionsEscalator(sessions_pb2_grpc.SessionsServiceStub(sessions_channel)),
        sweep,
        clock=clock,
    )

    async def close() -> None:
        await settings_channel.close()
        await sessions_channel.close()

    return GrpcServer(
        config=config,
        domain=DOMAIN,
        registrations=[
            Registration(
                SERVICE_NAME, lambda s: walks_pb2_grpc.add_WalksServiceServicer_to_server(servicer, s)
            )
        ],
        background=[sweep.runner],
        database=db,
        on_stop=[close, db.dispose],
    )
