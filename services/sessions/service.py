"""Assembles the sessions service: configuration, database, AI, settings client, server."""

from __future__ import annotations

from flowpilot.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from flowpilot.settings.v1 import settings_pb2_grpc
from pydantic_settings import SettingsConfigDict

from services.core import clients
from services.core.ai import AI, make_ai
from services.core.config import ServiceConfig
from services.core.db import Database
from services.core.server import GrpcServer, Registration
from services.sessions.servicer import SessionsServicer

DOMAIN = "sessions.flowpilot.internal"
SERVICE_NAME = sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"].full_name


class SessionsConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    service_name: str = "sessions"
    port: int = 50051
    settings_address: str = "127.0.0.1:50053"
    settings_cache_seconds: float = 10.0


def build(config: SessionsConfig, db: Database, *, ai: AI | None = None) -> GrpcServer:
    settings_channel = clients.channel(config.settings_address)
    settings = clients.SettingsReader(
        settings_pb2_grpc.SettingsServiceStub(settings_channel),
        ttl_seconds=config.settings_cache_seconds,
    )
    servicer = SessionsServicer(db, ai or make_ai(), settings)

    async def close_channel() -> None:
        await settings_channel.close()

    return GrpcServer(
        config=config,
        domain=DOMAIN,
        registrations=[
            Registration(
                SERVICE_NAME, lambda s: sessions_pb2_grpc.add_SessionsServiceServicer_to_server(servicer, s)
            )
        ],
        on_stop=[close_channel, db.dispose],
    )
