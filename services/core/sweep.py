"""A stale-work sweep: a periodic round that finds the accounts with work to
look at, then sweeps each one as the service acting for that account alone.

It never uses a BYPASSRLS login: the accounts come from a narrow SECURITY
DEFINER function that returns account ids only (:meth:`StaleSweep.accounts`).
Each account is then swept under its own RLS, as the service acting for that
one account (a short-lived service token, used to read the account's
"stale after" setting from the settings service), in transactions of its own
(:meth:`StaleSweep.abandon`): no transaction spans two accounts, and one
account's failure does not stop the others. Rounds, their time, failures and
what was abandoned are counted in the sweep's metrics.
"""

from __future__ import annotations

import abc
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection as Connection

from services.core.auth import Principal, ServiceCredential, bind_principal, unbind_principal
from services.core.background import Periodic
from services.core.clients import SettingsReader
from services.core.db import Database

log = logging.getLogger("flowpilot.sweep")


@dataclass(frozen=True, slots=True)
class SweepMetrics:
    runs: Counter  # by outcome (ok, failed)
    seconds: Histogram
    account_failures: Counter
    abandoned: Counter


class StaleSweep(abc.ABC):
    """Abandons an account's ``what`` left untouched for its ``setting``
    hours (an integer setting of the catalogue)."""

    name: ClassVar[str]  # the runner's, e.g. "stale-walk-sweep"
    what: ClassVar[str]  # "walks", "sessions": for logs
    setting: ClassVar[str]
    metrics: ClassVar[SweepMetrics]

    def __init__(
        self,
        db: Database,
        settings: SettingsReader,
        credential: ServiceCredential | None,
        *,
        interval_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 500,
    ) -> None:
        """``batch``: the most a sweep that works in batches changes in one transaction."""
        self._db = db
        self._settings = settings
        self._credential = credential
        self._metrics = self.metrics
        self._clock = clock
        self._batch = batch
        self.runner = Periodic(
            self.name,
            self.sweep_all,
            interval_seconds,
            first_round_now=False,
            enabled=credential is not None,
            off_reason="no service key (FLOWPILOT_SERVICE_PRIVATE_KEY)",
        )

    @abc.abstractmethod
    async def accounts(self, conn: Connection, now: datetime) -> list[uuid.UUID]:
        """The accounts that may have stale work (the narrow definer function)."""

    @abc.abstractmethod
    async def abandon(self, account: uuid.UUID, *, hours: int, now: datetime) -> int:
        """Abandons the account's work untouched for ``hours``; how much."""

    async def sweep_account(self, principal: Principal) -> tuple[int, int]:
        """(work abandoned, hours used) for the principal's account."""
        token = bind_principal(principal)
        try:
            hours = await self._settings.number(self.setting)
        finally:
            unbind_principal(token)
        abandoned = await self.abandon(principal.account_id, hours=hours, now=self._clock())
        if abandoned:
            self._metrics.abandoned.inc(abandoned)
            log.info(
                "abandoned stale %s",
                self.what,
                extra={"fields": {"account_id": str(principal.account_id), "count": abandoned}},
            )
        return abandoned, hours

    async def sweep_all(self) -> int:
        """One round over every account with possibly stale work; returns how
        much was abandoned."""
        started = time.perf_counter()
        try:
            total = await self._sweep_all()
        except Exception:
            self._metrics.runs.labels("failed").inc()
            raise
        finally:
            self._metrics.seconds.observe(time.perf_counter() - started)
        self._metrics.runs.labels("ok").inc()
        return total

    async def _sweep_all(self) -> int:
        assert self._credential is not None
        async with self._db.engine.connect() as conn:
            accounts = await self.accounts(conn, self._clock())
        total = 0
        for account in accounts:
            try:
                total += (await self.sweep_account(self._credential.principal_for(account)))[0]
            except Exception:  # one account's failure must not stop the others
                self._metrics.account_failures.inc()
                log.exception(
                    "%s sweep failed for an account",
                    self.what,
                    extra={"fields": {"account_id": str(account)}},
                )
        return total
