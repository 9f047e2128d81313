"""docker-compose.yml as compose reads it (``docker-compose config``; no engine
needed): one image, required keys, and the ``.env`` that ``make keys`` writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from services.core.auth import Role
from services.sessions.service import SessionsConfig
from services.walks.service import WalksConfig
from tests.support import ROOT
from tools.token import dev_token

COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "sessions", "library", "walks", "settings", "gateway")


def compose_config(env_file: Path, *, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose not installed (apt-get install docker-compose); make lint needs it too")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWPILOT_", "POSTGRES_"))}
    # A copy of the file without the variables to leave unset.
    text = "".join(
        line for line in env_file.read_text().splitlines(keepends=True) if line.split("=", 1)[0] not in unset
    )
    copy = env_file.parent / f".env-{uuid.uuid4().hex}"
    copy.write_text(text)
    try:
        return subprocess.run(
            [executable, "--env-file", str(copy), "-f", str(COMPOSE), "config"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        copy.unlink()


def resolved(env_file: Path) -> dict[str, Any]:
    done = compose_config(env_file)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def required_variables() -> set[str]:
    lines = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"\$\{(\w+):\?", "\n".join(lines)))


def test_one_image_built_once(tmp_path: Path) -> None:
    services = resolved(ROOT / ".env.example")["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images
    built = [name for name, service in services.items() if "build" in service]
    # The first application container to start builds it; the others wait for it.
    assert built == ["migrate"], built
    for name in APP_SERVICES:
        if name != "migrate":
            assert "migrate" in services[name].get("depends_on", {}) or name == "gateway", name


def test_env_example_names_every_required_variable(tmp_path: Path) -> None:
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required_variables() <= example, required_variables() - example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("missing", sorted(required_variables()))
def test_each_required_variable_fails_fast(missing: str) -> None:
    done = compose_config(ROOT / ".env.example", unset=(missing,))
    assert done.returncode != 0, f"compose accepted a missing {missing}"
    assert "mandatory value" in done.stderr or "required variable" in done.stderr, done.stderr


def test_service_public_keys_are_required() -> None:
    assert "FLOWPILOT_SERVICE_PUBLIC_KEYS" in required_variables()


def test_make_keys_writes_an_env_the_services_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    dev = tmp_path / "dev"
    run = subprocess.run(
        ["make", "--no-print-directory", "keys", f"KEYS_OUTPUT={env_file}"],
        cwd=ROOT,
        env={**os.environ, "FLOWPILOT_DEV_DIR": str(dev)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert env_file.stat().st_mode & 0o077 == 0, "secrets readable by others"
    assert set(required_variables()) <= {
        line.split("=", 1)[0] for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#"
    }
    # Not replaced without FORCE=1.
    again = subprocess.run(
        ["make", "--no-print-directory", "keys", f"KEYS_OUTPUT={env_file}"],
        cwd=ROOT,
        env={**os.environ, "FLOWPILOT_DEV_DIR": str(dev)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode != 0 and "FORCE=1" in again.stderr

    services = resolved(env_file)["services"]
    configs = {}
    for name, config_class in (("sessions", SessionsConfig), ("walks", WalksConfig)):
        environment = services[name]["environment"]
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("FLOWPILOT_")]:
                patch.delenv(key)
            for key, value in environment.items():
                patch.setenv(key, str(value))
            configs[name] = config_class()
    for name, config in configs.items():
        # Each service's own key is the one the others trust for it.
        assert config.service_private_key is not None
        private = serialization.load_pem_private_key(config.service_private_key.encode(), password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert public.decode().strip() == config.service_public_keys[name].strip()
    # A token minted with the issuer key that `make keys` kept verifies with the compose public key.
    token = dev_token(
        role=Role.VIEWER,
        private_key=dev / "compose-issuer-private.pem",
        issuer=configs["sessions"].jwt_issuer,
    )
    claims = jwt.decode(
        token,
        configs["sessions"].jwt_public_key,
        algorithms=["EdDSA"],
        audience=configs["sessions"].jwt_audience,
        issuer=configs["sessions"].jwt_issuer,
    )
    assert claims["role"] == "viewer"
    assert len(configs["sessions"].page_token_secrets[0]) >= 32
    # The passwords reach both ends: the migration job and the services' URLs.
    password = services["migrate"]["environment"]["FLOWPILOT_DB_RUNTIME_PASSWORD"]
    assert f":{password}@" in services["settings"]["environment"]["FLOWPILOT_DATABASE_URL"]
