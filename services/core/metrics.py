"""Prometheus metrics of a process (``prometheus-client``), one registry per
process, served on a port of its own (``FLOWPILOT_METRICS_PORT``; 0 = off).

Names follow the conventions scrapers and dashboards already know:
go-grpc-prometheus for gRPC servers (``grpc_server_*``), OpenTelemetry's
semantic conventions translated to Prometheus for HTTP servers
(``http_server_*``) and database connection pools (``db_client_connection_*``),
and ``flowpilot_*`` for what is FlowPilot's own (outbox, model calls, sweep).
The README lists every one.

The hot path (one RPC) only touches label children bound ahead of time; pool
figures are read when Prometheus scrapes, never per call.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from services.core.db import Database

log = logging.getLogger("flowpilot.metrics")

# Latency buckets (seconds) for RPCs and HTTP requests: 1 ms to 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Model calls take seconds, not milliseconds.
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0)

# --- gRPC server (go-grpc-prometheus names and labels) -----------------------
_GRPC = ("grpc_type", "grpc_service", "grpc_method")
GRPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_GRPC, "grpc_code")
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status, in seconds.",
    _GRPC,
    buckets=LATENCY_BUCKETS,
)
GRPC_IN_FLIGHT = Gauge("grpc_server_in_flight_requests", "RPCs being handled now.", ("grpc_service",))

# --- HTTP server (the gateway) ------------------------------------------------
HTTP_REQUESTS = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by route and status.",
    ("method", "route", "status"),
)
HTTP_SECONDS = Histogram(
    "http_server_request_duration_seconds",
    "Time to answer an HTTP request, in seconds.",
    ("method", "route"),
    buckets=LATENCY_BUCKETS,
)
HTTP_ACTIVE = Gauge("http_server_active_requests", "HTTP requests being answered now.")

# --- Database -------------------------------------------------------------------
DB_READY = Gauge(
    "flowpilot_database_ready",
    "1 while the periodic database check succeeds (what readiness reports), else 0.",
    ("service",),
)

# --- sessions: outbox -----------------------------------------------------------
OUTBOX_PENDING = Gauge("flowpilot_outbox_pending", "Outbox rows waiting for delivery (dead letters apart).")
OUTBOX_OLDEST_AGE = Gauge(
    "flowpilot_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row waiting for delivery (0: none).",
)
OUTBOX_DEAD = Gauge(
    "flowpilot_outbox_dead_letters", "Outbox rows given up on (dead letters), not retried yet."
)
OUTBOX_DELIVERIES = Counter(
    "flowpilot_outbox_deliveries_total",
    "Outbox delivery attempts by outcome: delivered, retry (failed, will retry), dead_letter.",
    ("outcome",),
)

# --- AI -------------------------------------------------------------------------
_AI = ("task", "tier", "backend")
AI_CALLS = Counter(
    "flowpilot_ai_model_calls_total", "Model calls by task, tier, backend and outcome.", (*_AI, "outcome")
)
AI_SECONDS = Histogram(
    "flowpilot_ai_model_call_duration_seconds",
    "Duration of model calls, in seconds.",
    _AI,
    buckets=MODEL_BUCKETS,
)
AI_TOKENS = Counter(
    "flowpilot_ai_tokens_total",
    "Tokens of model calls as the model API reported them, by tier and type (input, output).",
    ("tier", "model", "type"),
)
AI_RATE_LIMITED = Counter(
    "flowpilot_ai_rate_limited_total", "Model calls refused by the per-account limit (RESOURCE_EXHAUSTED)."
)

# --- walks: stale-walk sweep ----------------------------------------------------
SWEEP_RUNS = Counter(
    "flowpilot_sweep_runs_total", "Stale-walk sweep rounds, by outcome (ok, failed).", ("outcome",)
)
SWEEP_ACCOUNT_FAILURES = Counter(
    "flowpilot_sweep_account_failures_total", "Accounts a sweep round could not sweep (the others go on)."
)
SWEEP_ABANDONED = Counter("flowpilot_sweep_abandoned_walks_total", "Walks abandoned by the sweep as stale.")
SWEEP_SECONDS = Histogram(
    "flowpilot_sweep_duration_seconds",
    "Duration of stale-walk sweep rounds, in seconds.",
    buckets=MODEL_BUCKETS,
)

# --- sessions: stale-session sweep ----------------------------------------------
SESSION_SWEEP_RUNS = Counter(
    "flowpilot_session_sweep_runs_total", "Stale-session sweep rounds, by outcome (ok, failed).", ("outcome",)
)
SESSION_SWEEP_ACCOUNT_FAILURES = Counter(
    "flowpilot_session_sweep_account_failures_total",
    "Accounts a stale-session sweep round could not sweep (the others go on).",
)
SESSION_SWEEP_ABANDONED = Counter(
    "flowpilot_session_sweep_abandoned_sessions_total", "Sessions abandoned by the sweep as stale."
)
SESSION_SWEEP_SECONDS = Histogram(
    "flowpilot_session_sweep_duration_seconds",
    "Duration of stale-session sweep rounds, in seconds.",
    buckets=MODEL_BUCKETS,
)


class _Pools(Collector):
    """``db_client_connection_*`` of every watched database, read at scrape time."""

    def __init__(self) -> None:
        self._databases: dict[str, weakref.ref[Database]] = {}

    def watch(self, name: str, database: Database) -> None:
        self._databases[name] = weakref.ref(database)

    def describe(self) -> Iterable[Any]:
        return ()  # figures come and go with the databases watched

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = GaugeMetricFamily(
            "db_client_connection_count",
            "Connections of the pool, by state (used: checked out; idle).",
            labels=("pool_name", "state"),
        )
        pending = GaugeMetricFamily(
            "db_client_connection_pending_requests",
            "Callers waiting for a connection of the pool.",
            labels=("pool_name",),
        )
        limit = GaugeMetricFamily(
            "db_client_connection_max", "Most connections the pool opens.", labels=("pool_name",)
        )
        for name, ref in list(self._databases.items()):
            database = ref()
            if database is None:
                del self._databases[name]
                continue
            for pool, stats in database.pool_stats().items():
                label = f"{name}.{pool}"
                count.add_metric((label, "used"), stats.used)
                count.add_metric((label, "idle"), stats.idle)
                pending.add_metric((label,), stats.waiting)
                limit.add_metric((label,), stats.size)
        yield count
        yield pending
        yield limit


_pools = _Pools()
REGISTRY.register(_pools)


def watch_database(service: str, database: Database) -> None:
    """Reports ``database``'s pools as ``<service>.transactions`` and ``<service>.reads``."""
    _pools.watch(service, database)


def serve(port: int, host: str) -> int | None:
    """Serves ``/metrics`` on ``host:port`` in a thread of the process; 0 = off.

    A port that cannot be bound is logged and the process runs on without
    metrics: the service matters more than its figures (the scrape target
    shows as down)."""
    if port == 0:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as error:
        log.error("metrics not served", extra={"fields": {"port": port, "error": str(error)}})
        return None
    bound = int(server.server_port)
    log.info("metrics served", extra={"fields": {"address": f"{host}:{bound}", "path": "/metrics"}})
    return bound
