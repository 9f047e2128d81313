"""Readiness that tells the truth: the database check behind gRPC health.

Probes (the README's "Health and probes" says the same):

- **readiness**: the health status of service ``""`` and of each hosted
  service (``flowpilot.settings.v1.SettingsService``…). SERVING while the
  service can reach its database: every ``interval`` seconds a ``SELECT 1``
  runs on a connection of its own (the service's own login, outside both
  pools, so a busy pool never fails the check), bounded by ``timeout``;
  after ``failures`` failed checks in a row it is NOT_SERVING, and SERVING
  again at the first check that succeeds. At start one check decides.
- **liveness**: the status of service ``liveness``: SERVING while the process
  answers, whatever the database does (a restart would not bring it back).

Both go NOT_SERVING when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.core import metrics
from services.core.background import Periodic
from services.core.readpool import Connect

log = logging.getLogger("flowpilot.health")

LIVENESS = "liveness"


class DatabaseCheck:
    """Periodic ``SELECT 1``; calls ``on_change(ready)`` when readiness flips."""

    def __init__(
        self,
        connect: Connect,
        on_change: Callable[[bool], Awaitable[None]],
        *,
        service: str,
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
        failures: int = 3,
    ) -> None:
        self._connect = connect
        self._on_change = on_change
        self._timeout = timeout_seconds
        self._threshold = failures
        self._conn: asyncpg.Connection | None = None
        self._failures = 0
        self.ready: bool | None = None  # unknown until the first check
        self._gauge = metrics.DB_READY.labels(service)
        self.runner = Periodic("database-check", self.check, interval_seconds, first_round_now=False)

    async def _ping(self) -> None:
        async with asyncio.timeout(self._timeout):
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            await self._conn.fetchval("SELECT 1")

    async def check(self) -> bool:
        """One check; returns whether the service is ready after it."""
        try:
            await self._ping()
        except Exception as error:  # any failure to reach the database counts
            self._drop()
            self._failures += 1
            if self.ready is None or (self.ready and self._failures >= self._threshold):
                log.warning(
                    "database unreachable: NOT_SERVING",
                    extra={"fields": {"failed_checks": self._failures, "error": type(error).__name__}},
                )
                await self._set(False)
            return bool(self.ready)
        self._failures = 0
        if not self.ready:
            if self.ready is not None:
                log.info("database reachable again: SERVING")
            await self._set(True)
        return True

    async def _set(self, ready: bool) -> None:
        self.ready = ready
        self._gauge.set(1 if ready else 0)
        await self._on_change(ready)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self._timeout)
