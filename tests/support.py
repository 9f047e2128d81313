"""Test harness: a private database per run, keys, tokens, servers, errors.

Every run gets its own database and its own role prefix on the server named
by ``DATABASE_URL`` (or an embedded PostgreSQL from ``pgserver`` when unset),
both removed at the end. Tests isolate from each other by using fresh random
account ids, never by sharing rows.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.__main__ import migrate
from migrations.roles import RoleNames, drop_roles
from services.core.auth import Role, generate_keypair, mint_token
from services.core.config import to_asyncpg_url

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "flowpilot-test-identity"
AUDIENCE = "flowpilot"
PAGE_TOKEN_SECRET = "test-page-token-secret-" + "0123456789abcdef" * 2


def admin_server_url() -> str:
    """An administrator URL of the PostgreSQL server the tests may use."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    import pgserver

    server = pgserver.get_server(ROOT / "build" / "pgtest", cleanup_mode="stop")
    return str(server.get_uri())


@dataclass(frozen=True)
class RunDatabase:
    admin_url: str  # superuser, on this run's database
    roles: RoleNames

    def runtime_url(self, schema: str) -> str:
        url = make_url(to_asyncpg_url(self.admin_url)).set(username=self.roles.runtime(schema), password=None)
        return url.render_as_string(hide_password=False)


@asynccontextmanager
async def private_database() -> AsyncIterator[RunDatabase]:
    server_url = to_asyncpg_url(admin_server_url())
    suffix = secrets.token_hex(4)
    name = f"flowpilot_test_{suffix}"
    roles = RoleNames(f"fpt{suffix}")
    server = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        db_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        await migrate(db_url, roles)
        yield RunDatabase(admin_url=db_url, roles=roles)
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await drop_roles(conn, roles)
        await server.dispose()


@dataclass(frozen=True)
class Keys:
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls) -> Keys:
        private, public = generate_keypair()
        return cls(private, public)

    def token(
        self,
        *,
        account_id: uuid.UUID,
        role: Role = Role.ENGINEER,
        user_id: uuid.UUID | None = None,
        ttl_seconds: int = 600,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        name: str | None = None,
    ) -> str:
        return mint_token(
            private_key=self.private_pem,
            user_id=user_id or uuid.uuid4(),
            account_id=account_id,
            role=role,
            issuer=issuer,
            audience=audience,
            ttl_seconds=ttl_seconds,
            name=name,
        )

    def metadata(self, **kwargs: Any) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(**kwargs)}"),)


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: dict[str, str]


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Decodes the rich status of a failed call."""
    status: status_pb2.Status | None = rpc_status.from_call(error)
    reason = domain = ""
    violations: dict[str, str] = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = info.reason, info.domain
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
    return RpcFailure(error.code(), error.details() or "", reason, domain, violations)


async def expect_error(
    call: Any, code: grpc.StatusCode, *, field: str | None = None, reason: str | None = None
) -> RpcFailure:
    """Awaits a call that must fail with ``code`` (and the field violation or reason given)."""
    import pytest

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = failure(caught.value)
    assert error.code is code, error
    if field:
        assert field in error.violations, error
    if reason:
        assert error.reason == reason, error
    return error


@asynccontextmanager
async def running(build: Any, config: Any, *, pool_size: int = 10, **kwargs: Any) -> AsyncIterator[Any]:
    """A service built by ``build(config, db, **kwargs)``, started on its own
    pool, stopped (gracefully) at the end."""
    from services.core.db import Database

    server = build(config, Database.connect(config.database_url, pool_size=pool_size), **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    seconds: float = 10.0,
    every: float = 0.01,
) -> None:
    """Returns as soon as ``condition()`` (sync or async) holds, checked every
    ``every`` seconds; fails naming ``what`` after ``seconds``. How a test waits
    for something another task or process does, instead of sleeping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"still not {what} after {seconds} s")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_process_env(
    database: RunDatabase, keys: Keys, key_dir: Path, service: str, port: int, **extra: str
) -> dict[str, str]:
    """Environment for ``python -m services.<service>`` as a real process."""
    key = key_dir / "public.pem"
    key.write_text(keys.public_pem)
    return {
        **os.environ,
        "FLOWPILOT_PORT": str(port),
        "FLOWPILOT_DATABASE_URL": database.runtime_url(service),
        "FLOWPILOT_JWT_PUBLIC_KEY": str(key),
        "FLOWPILOT_JWT_ISSUER": ISSUER,
        "FLOWPILOT_JWT_AUDIENCE": AUDIENCE,
        "FLOWPILOT_PAGE_TOKEN_SECRETS": PAGE_TOKEN_SECRET,
        **extra,
    }


async def admin_scalar(database: RunDatabase, sql: str, **params: Any) -> Any:
    """One value read as the database's administrator (past RLS: what a test
    checks behind the service's back)."""
    admin = create_async_engine(to_asyncpg_url(database.admin_url))
    try:
        async with admin.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()
    finally:
        await admin.dispose()


async def backends(database: RunDatabase, application_name: str) -> int:
    """PostgreSQL backends of the connections opened under ``application_name``."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"
    return int(await admin_scalar(database, sql, n=application_name))


@asynccontextmanager
async def stand_in(add: Callable[[Any, grpc.aio.Server], None], servicer: Any) -> AsyncIterator[str]:
    """Another service played by ``servicer`` on a real gRPC server (added with
    its generated ``add_*Servicer_to_server``); yields the address."""
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@asynccontextmanager
async def own_postgres(prefix: str) -> AsyncIterator[tuple[RunDatabase, Any]]:
    """A PostgreSQL server of the test's own (embedded, in a temporary folder,
    migrated), which the test may stop, start and restart: yields the run's
    database on it and the ``pgserver`` server."""
    import tempfile

    import pgserver

    with tempfile.TemporaryDirectory() as folder:
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            url = to_asyncpg_url(server.get_uri())
            roles = RoleNames(f"{prefix}{secrets.token_hex(3)}")
            await migrate(url, roles)
            yield RunDatabase(admin_url=url, roles=roles), server
        finally:
            server.cleanup()


def pg_ctl(server: Any, *args: str) -> None:
    """``pg_ctl -w -m fast <args>`` on a server of :func:`own_postgres`, as the
    system user it runs as."""
    import pgserver

    pgserver.pg_ctl(["-w", "-m", "fast", *args], pgdata=server.pgdata, user=server.system_user, timeout=30)


@dataclass
class StandInAnswer:
    """How a stand-in for another service answers: after ``delay`` seconds
    (counted in ``in_flight`` meanwhile), with ``refuse`` when set."""

    delay: float = 0.0
    refuse: grpc.StatusCode | None = None
    refusal: str = "refused by the stand-in"
    in_flight: int = 0

    async def answer(self, context: Any) -> None:
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.refuse is not None:
            await context.abort(self.refuse, self.refusal)


def retry_delay(status: status_pb2.Status | None) -> float | None:
    """The seconds a ``google.rpc.RetryInfo`` detail of ``status`` asks to wait, if any."""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None
