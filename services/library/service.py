"""Assembles the library service: configuration, database, AI, settings client, server."""

from __future__ import annotations

from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from pydantic_settings import SettingsConfigDict

from services.core import clients
from services.core.ai import AI, make_ai
from services.core.config import SettingsClientConfig
from services.core.db import Database
from services.core.server import GrpcServer, Registration
from services.library.servicer import LibraryServicer

DOMAIN = "library.flowpilot.internal"
SERVICE_NAME = library_pb2.DESCRIPTOR.services_by_name["LibraryService"].full_name


class LibraryConfig(SettingsClientConfig):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    service_name: str = "library"
    port: int = 50052
    metrics_port: int = 9652


def build(config: LibraryConfig, db: Database, *, ai: AI | None = None) -> GrpcServer:
    settings, settings_channel = clients.settings_reader(
        config.settings_address, ttl_seconds=config.settings_cache_seconds
    )
    servicer = LibraryServicer(db, ai or make_ai(), settings)

    async def close_channel() -> None:
        await settings_channel.close()

    return GrpcServer(
        config=config,
        domain=DOMAIN,
        registrations=[
            Registration(
                SERVICE_NAME, lambda s: library_pb2_grpc.add_LibraryServiceServicer_to_server(servicer, s)
            )
        ],
        database=db,
        on_stop=[close_channel, db.dispose],
    )
