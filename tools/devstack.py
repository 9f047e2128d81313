"""``make run``: the whole suite on this machine, in the foreground.

Uses ``DATABASE_URL`` (an administrator URL) when set, otherwise an embedded
PostgreSQL (``pgserver``) whose data lives in ``$FLOWPILOT_DEV_DIR/pgdata``
(default ``.dev/``) and survives restarts. Creates roles and schemas,
migrates, starts every service that exists as its own process on its port,
waits until each reports SERVING, then prints addresses, a dev token and a
grpcurl command (grpcurl lives beside this Python, in ``.venv/bin``; the
banner says so). Each long step prints a ``==>`` line first. Ctrl-C (or
SIGTERM) stops every process gracefully, the embedded database last.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.__main__ import migrate
from migrations.roles import RoleNames
from services.core.auth import Role
from services.core.config import to_asyncpg_url
from tools.token import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    dev_dir,
    dev_keys,
    dev_page_token_secret,
    dev_service_keys,
    dev_token,
)

DEV_DATABASE = "flowpilot"


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    port_env: str
    default_port: int
    schema: str | None  # None: not a database client (the gateway)

    def port(self) -> int:
        return int(os.environ.get(self.port_env, self.default_port))


PROCESSES = [
    Process("sessions", "services.sessions", "FLOWPILOT_SESSIONS_PORT", 50051, "sessions"),
    Process("library", "services.library", "FLOWPILOT_LIBRARY_PORT", 50052, "library"),
    Process("settings", "services.settings", "FLOWPILOT_SETTINGS_PORT", 50053, "settings"),
    Process("walks", "services.walks", "FLOWPILOT_WALKS_PORT", 50054, "walks"),
    Process("gateway", "gateway", "FLOWPILOT_GATEWAY_PORT", 8080, None),
]


def step(message: str) -> None:
    """A progress line before a step that is silent for a while."""
    print(f"==> {message}", flush=True)


def tools_bin() -> Path:
    """Where grpcurl and the other dev tools are: beside this Python (``.venv/bin``)."""
    return Path(sys.executable).parent


def existing() -> list[Process]:
    """The processes whose package is present (services are added one by one)."""
    return [p for p in PROCESSES if importlib.util.find_spec(p.module) is not None]


def start_database() -> tuple[str, Any]:
    """(administrator URL of the dev database, embedded server or None)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        step(f"using the PostgreSQL server of DATABASE_URL ({make_url(url).render_as_string()})")
        return url, None
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver

    pgdata = dev_dir() / "pgdata"
    step(f"starting the embedded PostgreSQL (data in {pgdata}; the first start takes a few seconds)")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    admin = to_asyncpg_url(server.get_uri())

    async def create() -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DEV_DATABASE}
            )
            if found.first() is None:
                await conn.execute(text(f'CREATE DATABASE "{DEV_DATABASE}"'))
        await engine.dispose()

    asyncio.run(create())
    return make_url(admin).set(database=DEV_DATABASE).render_as_string(hide_password=False), server


def migrate_database(admin_url: str, roles: RoleNames, password: str | None) -> None:
    step("migrating: roles, schemas, every service's migrations")
    asyncio.run(migrate(admin_url, roles, runtime_password=password))


def runtime_url(admin_url: str, role: str, password: str | None) -> str:
    url = make_url(to_asyncpg_url(admin_url)).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


def wait_serving(proc: Process, address: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.schema is None:
        wait_http(f"http://{address}/healthz", process, timeout)
        return
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{address}: process exited with {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"{address}: not SERVING after {timeout}s")


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own localhost URL)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}: not healthy after {timeout}s")


def stop_all(children: list[subprocess.Popen[bytes]], grace: float = 15) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    admin_url, embedded = start_database()
    roles = RoleNames(os.environ.get("FLOWPILOT_DB_ROLE_PREFIX", "flowpilot"))
    password = os.environ.get("FLOWPILOT_DB_RUNTIME_PASSWORD")
    migrate_database(admin_url, roles, password)
    _, public_key = dev_keys()
    page_secret = os.environ.get("FLOWPILOT_PAGE_TOKEN_SECRETS") or dev_page_token_secret()
    service_keys = dev_service_keys([p.name for p in PROCESSES if p.schema])
    trusted = ";".join(f"{name}={public}" for name, (_, public) in service_keys.items())
    host = os.environ.get("FLOWPILOT_HOST", "127.0.0.1")
    children: list[subprocess.Popen[bytes]] = []
    try:
        started: list[tuple[Process, str]] = []
        addresses = {f"FLOWPILOT_{p.name.upper()}_ADDRESS": f"127.0.0.1:{p.port()}" for p in PROCESSES}
        processes = existing()
        step(f"starting {', '.join(p.name for p in processes)} and waiting until each is serving")
        for proc in processes:
            env = {
                **os.environ,
                **addresses,
                "FLOWPILOT_HOST": host,
                "FLOWPILOT_PORT": str(proc.port()),
                "FLOWPILOT_JWT_PUBLIC_KEY": str(public_key),
                "FLOWPILOT_JWT_ISSUER": DEV_ISSUER,
                "FLOWPILOT_JWT_AUDIENCE": DEV_AUDIENCE,
                "FLOWPILOT_PAGE_TOKEN_SECRETS": page_secret,
            }
            if proc.schema:
                env["FLOWPILOT_DATABASE_URL"] = runtime_url(admin_url, roles.runtime(proc.schema), password)
                env["FLOWPILOT_SERVICE_PRIVATE_KEY"] = str(service_keys[proc.name][0])
                env["FLOWPILOT_SERVICE_PUBLIC_KEYS"] = trusted
            children.append(subprocess.Popen([sys.executable, "-m", proc.module], env=env))
            started.append((proc, f"{host}:{proc.port()}"))
        for (proc, address), child in zip(started, children, strict=True):
            wait_serving(proc, address, child)
        banner(started, embedded is not None)
        while not stop:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                print(f"a service exited ({dead[0].args!r}); stopping", file=sys.stderr)
                break
            time.sleep(0.3)
    finally:
        stop_all(children)
        if embedded is not None:
            embedded.cleanup()
        print("stopped", flush=True)


def banner(started: list[tuple[Process, str]], embedded: bool) -> None:
    token = dev_token(role=Role.TEAM_ADMIN)
    settings = next((a for p, a in started if p.name == "settings"), None)
    lines = ["", "FlowPilot is running" + (" (embedded PostgreSQL)" if embedded else ""), ""]
    lines += [f"  {p.name:<10} {'http' if p.schema is None else 'grpc'}://{a}" for p, a in started]
    lines += [
        "",
        "Dev token (team_admin, 12 h; `make token ROLE=viewer` for others):",
        "",
        f"  export TOKEN={token}",
        "",
    ]
    if settings:
        lines += [
            f"grpcurl is in {tools_bin()} (not on your PATH unless you put it there):",
            "",
            f'  export PATH="{tools_bin()}:$PATH"',
            "",
            "Try:",
            "",
            f"  grpcurl -plaintext {settings} list",
            '  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d \'{"name": "settings/notes.format"}\' \\',
            f"    {settings} flowpilot.settings.v1.SettingsService/GetSetting",
            "",
        ]
    gateway = next((a for p, a in started if p.schema is None), None)
    if gateway:
        lines += [
            f'  curl -H "Authorization: Bearer $TOKEN" http://{gateway}/v1/settings',
            f"  curl http://{gateway}/openapi.json",
            "",
        ]
    lines += ["Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
