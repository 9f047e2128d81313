"""The gateway's configuration: read from the environment, checked at start;
its default worker count follows the cores it may use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, available_cores


def test_workers_default_to_the_available_cores_within_a_cgroup_quota(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    assert available_cores(tmp_path / "missing") == cores
    limit.write_text("max 100000\n")
    assert available_cores(limit) == cores
    limit.write_text("50000 100000\n")  # half a core: still one worker
    assert available_cores(limit) == 1
    limit.write_text(f"{100000 * (cores + 3)} 100000\n")  # a quota above the affinity
    assert available_cores(limit) == cores
    assert GatewayConfig().workers == available_cores()


def test_settings_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPILOT_PORT", "8181")
    monkeypatch.setenv("flowpilot_cors_origins", " https://a.example , https://b.example,")
    monkeypatch.setenv("FLOWPILOT_DEFAULT_TIMEOUT_SECONDS", "2.5")
    config = GatewayConfig(max_body_bytes=4096)
    assert config.port == 8181
    assert config.cors_origins == ["https://a.example", "https://b.example"]
    assert config.default_timeout_seconds == 2.5
    assert config.max_body_bytes == 4096
    assert GatewayConfig(port=9000).port == 9000  # an argument wins over the variable
    assert GatewayConfig(response_metadata=["x-a"]).response_metadata == ["x-a"]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("FLOWPILOT_PORT", "70000", "not within its bounds"),
        ("FLOWPILOT_PORT", "80.5", "expected a whole number"),
        ("FLOWPILOT_MAX_BODY_BYTES", "100", "not within its bounds"),
        ("FLOWPILOT_DEFAULT_TIMEOUT_SECONDS", "0", "not within its bounds"),
        ("FLOWPILOT_MAX_TIMEOUT_SECONDS", "nan", "expected a number"),
        ("FLOWPILOT_WORKERS", "many", "expected a whole number"),
    ],
)
def test_a_bad_setting_stops_the_gateway_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"^{variable}: .*{problem}"):
        GatewayConfig()


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="no setting prot"):
        GatewayConfig(prot=1)


def test_the_gateway_loads_neither_pydantic_nor_the_token_library() -> None:
    """Each is megabytes of every gateway process (the goal is <= 60 MB)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, gateway.app, gateway.__main__; print(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert not [
        m for m in loaded if m.split(".")[0] in ("pydantic", "pydantic_settings", "jwt", "cryptography")
    ]
