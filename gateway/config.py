"""Gateway configuration, read from the environment once at start."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CsvList = Annotated[list[str], NoDecode]


def available_cores(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, within a cgroup v2 CPU
    quota when there is one (a container's limit), at least 1."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


class GatewayConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Backends, by service package.
    sessions_address: str = "127.0.0.1:50051"
    library_address: str = "127.0.0.1:50052"
    settings_address: str = "127.0.0.1:50053"
    walks_address: str = "127.0.0.1:50054"
    # Browser origins allowed by CORS (comma separated); empty: none.
    cors_origins: CsvList = Field(default_factory=lambda: ["http://localhost:5173", "http://127.0.0.1:5173"])
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    default_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    # Request headers passed to the services as gRPC metadata (besides
    # authorization and x-request-id, which always are).
    forward_headers: CsvList = Field(default_factory=lambda: ["accept-language"])
    # gRPC response metadata passed back as HTTP headers.
    response_metadata: CsvList = Field(default_factory=list)
    # uvicorn worker processes; by default one per available core (a Python
    # process answers on one core at a time).
    workers: int = Field(default_factory=available_cores, ge=1, le=64)
    # Prometheus /metrics on this port of FLOWPILOT_HOST, apart from the API (0 = off);
    # with several workers, the supervising process serves all of theirs.
    metrics_port: int = Field(default=9680, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("cors_origins", "forward_headers", "response_metadata", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def backends(self) -> dict[str, str]:
        """Service package (``flowpilot.<name>.v1``) → address."""
        return {
            "flowpilot.sessions.v1": self.sessions_address,
            "flowpilot.library.v1": self.library_address,
            "flowpilot.settings.v1": self.settings_address,
            "flowpilot.walks.v1": self.walks_address,
        }
