"""Typed process configuration, read from the environment once at start.

Every variable is prefixed ``FLOWPILOT_``; OpenTelemetry keeps its standard
``OTEL_*`` names. A service subclasses :class:`ServiceConfig` to set its own
default port. Invalid values stop the process at start with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class AuthConfig(BaseSettings):
    """How bearer tokens are verified (and, for service tokens, minted)."""

    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_", extra="ignore")

    # PEM text of the public key that signs user tokens, or a path to it.
    jwt_public_key: str = Field(min_length=1)
    jwt_issuer: str = "flowpilot-identity"
    jwt_audience: str = "flowpilot"
    jwt_algorithm: str = "EdDSA"
    # Allowed clock skew when checking exp/nbf/iat.
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # Longest accepted token lifetime (exp - iat); tokens without iat are refused.
    jwt_max_lifetime_seconds: float = Field(default=24 * 3600, gt=0, le=30 * 24 * 3600)
    # Public keys of the services whose own tokens are trusted, as
    # "sessions=<PEM or path>;walks=<PEM or path>".
    service_public_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    @field_validator("jwt_public_key")
    @classmethod
    def _load_key(cls, value: str) -> str:
        return _pem_or_path(value)

    @field_validator("service_public_keys", mode="before")
    @classmethod
    def _load_service_keys(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(";") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("must be name=key pairs separated by ';'")
            value = {name.strip(): key.strip() for name, key in pairs}
        if isinstance(value, dict):
            return {name: _pem_or_path(key) for name, key in value.items()}
        return value


class ServiceConfig(AuthConfig):
    """Configuration shared by every gRPC service process."""

    # Subclasses name the service and override the default port.
    service_name: str = "flowpilot"
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    # The service's own login role, e.g. postgresql+asyncpg://flowpilot_settings@host/db
    database_url: str = Field(min_length=1)
    # Connections for transactions, and (apart) for the one-call tenant reads.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_read_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # A call that arrives without a deadline gets this one (model calls included:
    # FLOWPILOT_AI_TIMEOUT_SECONDS bounds each model request within it).
    default_deadline_seconds: float = Field(default=60.0, gt=0, le=3600)
    # In-flight RPCs get this long to finish on SIGTERM.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    # On SIGTERM, health reports NOT_SERVING this long before new work is refused.
    shutdown_drain_seconds: float = Field(default=0.5, ge=0, le=60)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    keepalive_time_seconds: int = Field(default=60, ge=10)
    log_level: str = "INFO"
    # Prometheus /metrics on this port (each service sets its own default; 0 = off).
    # With FLOWPILOT_WORKERS > 1, worker i serves on this port + i.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Readiness: a SELECT 1 on the service's own login every interval (0 = no
    # check: always SERVING), bounded by the timeout; NOT_SERVING after this
    # many failed checks in a row, SERVING again at the first that succeeds.
    db_check_interval_seconds: float = Field(default=5.0, ge=0, le=3600)
    db_check_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    db_check_failures: int = Field(default=3, ge=1, le=100)
    # Worker processes sharing the port (SO_REUSEPORT): use every core.
    workers: int = Field(default=1, ge=1, le=64)
    # This service's own signing key (PEM or path), for its service tokens.
    service_private_key: str | None = None
    # Secrets that authenticate page tokens (HMAC-SHA256), comma separated:
    # the first signs, every one verifies, so a secret can be rotated. The
    # same on every replica of a deployment.
    page_token_secrets: Annotated[list[str], NoDecode] = Field(min_length=1)

    @field_validator("service_private_key")
    @classmethod
    def _load_private(cls, value: str | None) -> str | None:
        return None if value is None else _pem_or_path(value)

    @field_validator("page_token_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and any(len(str(item)) < 32 for item in value):
            raise ValueError("each secret must be at least 32 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return to_asyncpg_url(value)


def to_asyncpg_url(url: str) -> str:
    """Accepts libpq-style ``postgresql://`` URLs and selects the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("must be a postgresql:// URL")


def _pem_or_path(value: str) -> str:
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError("must be PEM text or the path of a PEM file")
    return path.read_text()


class SettingsClientConfig(ServiceConfig):
    """A service that reads account settings from the settings service."""

    settings_address: str = "127.0.0.1:50053"
    # How long an account's settings are cached (a stale read lasts at most this).
    settings_cache_seconds: float = Field(default=10.0, ge=0, le=3600)
