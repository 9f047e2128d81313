"""Assembles the settings service: configuration, database, servicer, server."""

from __future__ import annotations

from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from pydantic_settings import SettingsConfigDict

from services.core.config import ServiceConfig
from services.core.db import Database
from services.core.server import GrpcServer, Registration
from services.settings.servicer import SettingsServicer

DOMAIN = "settings.flowpilot.internal"
SERVICE_NAME = settings_pb2.DESCRIPTOR.services_by_name["SettingsService"].full_name


class SettingsConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    service_name: str = "settings"
    port: int = 50053
    metrics_port: int = 9653


def build(
    config: SettingsConfig, db: Database, *, servicer_type: type[SettingsServicer] = SettingsServicer
) -> GrpcServer:
    servicer = servicer_type(db)
    return GrpcServer(
        config=config,
        domain=DOMAIN,
        registrations=[
            Registration(
                SERVICE_NAME,
                lambda server: settings_pb2_grpc.add_SettingsServiceServicer_to_server(servicer, server),
            )
        ],
        database=db,
        on_stop=[db.dispose],
    )
