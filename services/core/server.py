"""Server bootstrap shared by every service.

``GrpcServer`` owns a ``grpc.aio`` server with explicit message-size and
keepalive settings, the standard health service, server reflection built from
the registered descriptors, the runtime around every FlowPilot method
(``services.core.rpc``; OpenTelemetry's server interceptor too when spans are
exported), and a graceful shutdown: health goes NOT_SERVING, new calls are
refused with UNAVAILABLE after a short drain, in-flight RPCs get
``shutdown_grace_seconds`` to finish, then the service's resources (its
database pool) are closed and the process ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from services.core import logs, memory, metrics, pagination, telemetry
from services.core.auth import ServiceCredential, TokenVerifier
from services.core.config import ServiceConfig
from services.core.db import Database
from services.core.health import LIVENESS, DatabaseCheck
from services.core.readpool import driver_connect
from services.core.rpc import Runtime, method_rules

log = logging.getLogger("flowpilot.server")


class Background(Protocol):
    """Work a service runs beside its server, started and stopped with it."""

    def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Registration:
    """One gRPC service to host: its full proto name and how to add it."""

    service_name: str
    add_to_server: Callable[[grpc.aio.Server], None]


def verifier_from(config: ServiceConfig) -> TokenVerifier:
    return TokenVerifier(
        public_key=config.jwt_public_key,
        issuer=config.jwt_issuer,
        audience=config.jwt_audience,
        algorithm=config.jwt_algorithm,
        leeway_seconds=config.jwt_leeway_seconds,
        max_lifetime_seconds=config.jwt_max_lifetime_seconds,
        service_keys=config.service_public_keys,
    )


def credential_from(config: ServiceConfig) -> ServiceCredential | None:
    """The service's own credential, when it has a signing key."""
    if config.service_private_key is None:
        return None
    return ServiceCredential(
        service=config.service_name, private_key=config.service_private_key, audience=config.jwt_audience
    )


def _grpc_server(config: ServiceConfig, *, spans: bool) -> grpc.aio.Server:
    """The gRPC server with explicit message-size and keepalive settings."""
    mb = config.max_message_bytes
    return grpc.aio.server(
        # Server spans with the instrumentation's attributes, only when exported.
        interceptors=[aio_server_interceptor()] if spans else None,
        options=[
            ("grpc.max_receive_message_length", mb),
            ("grpc.max_send_message_length", mb),
            ("grpc.keepalive_time_ms", config.keepalive_time_seconds * 1000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Processes share a port only on purpose (FLOWPILOT_WORKERS > 1).
            ("grpc.so_reuseport", 1 if os.environ.get(_WORKER_ENV) else 0),
        ],
    )


class GrpcServer:
    def __init__(
        self,
        *,
        config: ServiceConfig,
        domain: str,
        registrations: Sequence[Registration],
        on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
        background: Sequence[Background] = (),
        drain_seconds: float | None = None,
        database: Database | None = None,
    ) -> None:
        """``database``: the service's own; readiness follows it (see
        ``services.core.health``) and its pools are reported as metrics."""
        self.config = config
        self._registrations = list(registrations)
        self._on_stop = list(on_stop)
        self.background = list(background)
        self._drain_seconds = config.shutdown_drain_seconds if drain_seconds is None else drain_seconds
        self._stopped = asyncio.Event()
        self._stopping = False
        spans = telemetry.exporting()
        pagination.use_secrets(config.page_token_secrets)
        self._runtime = runtime = Runtime(
            verifier=verifier_from(config),
            rules=method_rules(r.service_name for r in self._registrations),
            domain=domain,
            spans=spans,
            default_deadline_seconds=config.default_deadline_seconds,
        )
        self._server = _grpc_server(config, spans=spans)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        for registration in self._registrations:
            # Generated registration code takes a server; the registrar wraps what it adds.
            registration.add_to_server(cast(grpc.aio.Server, runtime.registrar(self._server)))
        reflection.enable_server_reflection(
            [r.service_name for r in self._registrations]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        self.port = 0
        self.database_check: DatabaseCheck | None = None
        if database is not None:
            metrics.watch_database(config.service_name, database)
            if config.db_check_interval_seconds > 0:
                self.database_check = DatabaseCheck(
                    driver_connect(database.engine, f"flowpilot-{config.service_name}-health"),
                    self._set_ready,
                    service=config.service_name,
                    interval_seconds=config.db_check_interval_seconds,
                    timeout_seconds=config.db_check_timeout_seconds,
                    failures=config.db_check_failures,
                )

    async def _set_ready(self, ready: bool) -> None:
        """Readiness: service "" and every hosted service (liveness stays as it is)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        for registration in self._registrations:
            await self.health.set(registration.service_name, status)

    async def start(self) -> int:
        address = f"{self.config.host}:{self.config.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind {address}")
        await self._server.start()
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        if self.database_check is None:
            await self._set_ready(True)
        else:
            await self.database_check.check()  # sets readiness either way
            self.database_check.start()
        for work in self.background:
            work.start()  # e.g. outbox delivery, the stale-walk sweep
        log.info("serving", extra={"fields": {"address": f"{self.config.host}:{self.port}"}})
        return self.port

    async def stop(self) -> None:
        """Graceful stop of a server in a process that goes on (tests, tools);
        safe to call more than once. A service's own process ends through
        ``serve_until_signalled`` instead."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        await self._drain()
        await self._server.stop(0)  # no call of ours is left running
        await self._close()

    async def _drain(self) -> None:
        """NOT_SERVING, calls still served for the drain (balancers move away
        meanwhile), then new calls refused with UNAVAILABLE while the running
        ones get the grace period."""
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(self._drain_seconds)
        try:
            async with asyncio.timeout(self.config.shutdown_grace_seconds):
                await self._runtime.refuse_new_calls()
        except TimeoutError:
            log.warning("calls still running after the grace period are cut off")

    async def _close(self) -> None:
        if self.database_check is not None:
            await self.database_check.stop()
        for work in self.background:
            await work.stop()
        for close in self._on_stop:
            await close()
        log.info("stopped")
        self._stopped.set()

    async def serve_until_signalled(self) -> None:
        """Starts, then runs until SIGTERM or SIGINT, drains, and ends the process.

        The process ends with its gRPC server still open: closing its
        connections with the process makes a call still in transit fail
        UNAVAILABLE at the client, which retries it, where grpc-core's own
        stop would answer it CANCELLED (grpc/grpc#41785), which clients do
        not retry."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await stop_requested.wait()
        log.info("shutting down", extra={"fields": {"grace_seconds": self.config.shutdown_grace_seconds}})
        self._stopping = True
        await self._drain()
        await self._close()
        telemetry.shutdown()
        logging.shutdown()
        os._exit(0)


C = TypeVar("C", bound=ServiceConfig)


_WORKER_ENV = "FLOWPILOT_WORKER_PROCESS"


def _worker_env(env: dict[str, str], metrics_port: int, index: int) -> dict[str, str]:
    """Each worker serves its own metrics: worker ``index`` on ``metrics_port + index``."""
    return {**env, "FLOWPILOT_METRICS_PORT": str(metrics_port + index if metrics_port else 0)}


def _supervise(module: str, workers: int, metrics_port: int) -> None:
    """Runs ``workers`` copies of the service on one port (SO_REUSEPORT); the
    kernel spreads connections over them. Signals are passed on; it exits when
    every worker has."""
    env = {**os.environ, _WORKER_ENV: "1", "FLOWPILOT_WORKERS": "1"}
    children = [
        subprocess.Popen([sys.executable, "-m", module], env=_worker_env(env, metrics_port, index))  # noqa: S603
        for index in range(workers)
    ]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    raise SystemExit(max(codes, default=0))


def run_service(config_type: type[C], build: Callable[[C, Database], GrpcServer]) -> None:
    """``python -m services.<name>``: configure from the environment and serve."""
    config = config_type()  # required fields come from the environment
    if config.workers > 1 and not os.environ.get(_WORKER_ENV):
        _supervise(config_type.__module__.rsplit(".", 1)[0], config.workers, config.metrics_port)
        return
    memory.tune()
    logs.configure(config.log_level, service=config.service_name)
    metrics.serve(config.metrics_port, config.host)
    telemetry.setup(f"flowpilot-{config.service_name}")
    telemetry.instrument_database()

    async def main() -> None:
        db = Database.connect(
            config.database_url,
            pool_size=config.db_pool_size,
            pool_timeout=config.db_pool_timeout_seconds,
            read_pool_size=config.db_read_pool_size,
            application_name=f"flowpilot-{config.service_name}",
        )
        await build(config, db).serve_until_signalled()

    asyncio.run(main())
