"""Gateway configuration, read from the environment once at start.

A frozen dataclass rather than the services' pydantic-settings classes:
pydantic and pydantic-settings would be a sixth of a gateway process's
memory (about 11 MB of ~70), and the gateway's settings are a handful of
numbers, strings and comma-separated lists. The same rules hold: each field
comes from ``FLOWPILOT_<NAME>`` (the name in any case) unless given as an
argument, values are converted to the field's type and checked against its
bounds when the object is made, and anything else stops the process with
a ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "FLOWPILOT_"


class ConfigError(ValueError):
    """A setting that is not of its field's type or not within its bounds."""


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


def _bounds(*, ge: float | None = None, gt: float | None = None, le: float | None = None) -> dict[str, Any]:
    return {"bounds": {"ge": ge, "gt": gt, "le": le}}


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_bounds(ge=0, le=65535))
    # Backends, by service package.
    sessions_address: str = "127.0.0.1:50051"
    library_address: str = "127.0.0.1:50052"
    settings_address: str = "127.0.0.1:50053"
    walks_address: str = "127.0.0.1:50054"
    # Browser origins allowed by CORS (comma separated); empty: none.
    cors_origins: list[str] = field(
        default_factory=lambda: ["http://localhost:5173", "http://127.0.0.1:5173"]
    )
    max_body_bytes: int = field(default=1024 * 1024, metadata=_bounds(ge=1024, le=64 * 1024 * 1024))
    default_timeout_seconds: float = field(default=30.0, metadata=_bounds(gt=0, le=600))
    max_timeout_seconds: float = field(default=120.0, metadata=_bounds(gt=0, le=3600))
    # Request headers passed to the services as gRPC metadata (besides
    # authorization and x-request-id, which always are).
    forward_headers: list[str] = field(default_factory=lambda: ["accept-language"])
    # gRPC response metadata passed back as HTTP headers.
    response_metadata: list[str] = field(default_factory=list)
    # uvicorn worker processes; by default one per available core (a Python
    # process answers on one core at a time).
    workers: int = field(default_factory=available_cores, metadata=_bounds(ge=1, le=64))
    # Prometheus /metrics on this port of FLOWPILOT_HOST, apart from the API (0 = off);
    # with several workers, the supervising process serves all of theirs.
    metrics_port: int = field(default=9680, metadata=_bounds(ge=0, le=65535))
    log_level: str = "INFO"

    def __init__(self, **given: Any) -> None:
        environment = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(PREFIX)}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"GatewayConfig has no setting {', '.join(sorted(unknown))}")
        for spec in dataclasses.fields(self):
            variable = PREFIX + spec.name.upper()
            if spec.name in given:
                value = _converted(variable, spec, given[spec.name])
            elif variable in environment:
                value = _converted(variable, spec, environment[variable])
            else:
                value = _default(spec)
            _check_bounds(variable, value, spec.metadata.get("bounds", {}))
            object.__setattr__(self, spec.name, value)

    def backends(self) -> dict[str, str]:
        """Service package (``flowpilot.<name>.v1``) → address."""
        return {
            "flowpilot.sessions.v1": self.sessions_address,
            "flowpilot.library.v1": self.library_address,
            "flowpilot.settings.v1": self.settings_address,
            "flowpilot.walks.v1": self.walks_address,
        }


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _converted(variable: str, spec: dataclasses.Field[Any], value: Any) -> Any:
    kind = spec.type
    if kind == "list[str]":
        if isinstance(value, str):
            return _csv(value)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{variable}: expected a comma-separated list, got {value!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(f"{variable}: expected text, got {value!r}")
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value.strip() if isinstance(value, str) else value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except (TypeError, ValueError):
        raise ConfigError(
            f"{variable}: expected {'a whole number' if kind == 'int' else 'a number'}, got {value!r}"
        ) from None
    raise AssertionError(f"no conversion to {kind}")


def _check_bounds(variable: str, value: Any, bounds: dict[str, float | None]) -> None:
    ge, gt, le = bounds.get("ge"), bounds.get("gt"), bounds.get("le")
    if (ge is not None and value < ge) or (gt is not None and value <= gt) or (le is not None and value > le):
        lower = f">= {ge}" if ge is not None else f"> {gt}"
        raise ConfigError(f"{variable}: {value!r} is not within its bounds ({lower}, <= {le})")
