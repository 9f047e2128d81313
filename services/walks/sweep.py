"""The stale-walk sweep: active walks with no step for the account's
``walks.stale_after_hours`` are abandoned.

It never uses a BYPASSRLS login: the accounts to look at come from
``walks.accounts_with_active_walks`` (a narrow SECURITY DEFINER function that
returns account ids only); each account is then swept under its own RLS,
acting as the walks service for that account (a short-lived service token,
used to read the account's setting from the settings service).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.core import metrics
from services.core.auth import Principal, ServiceCredential, bind_principal, unbind_principal
from services.core.background import Periodic
from services.core.clients import SettingsReader
from services.core.db import Database
from services.walks import storage

log = logging.getLogger("flowpilot.walks.sweep")


class StaleWalkSweep:
    def __init__(
        self,
        db: Database,
        settings: SettingsReader,
        credential: ServiceCredential | None,
        *,
        interval_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._settings = settings
        self._credential = credential
        self._clock = clock
        self.runner = Periodic(
            "stale-walk-sweep",
            self.sweep_all,
            interval_seconds,
            first_round_now=False,
            enabled=credential is not None,
            off_reason="no service key (FLOWPILOT_SERVICE_PRIVATE_KEY)",
        )

    async def sweep_account(self, principal: Principal) -> tuple[int, int]:
        """(walks abandoned, hours used) for the principal's account."""
        token = bind_principal(principal)
        try:
            hours = await self._settings.number("walks.stale_after_hours")
        finally:
            unbind_principal(token)
        now = self._clock()
        async with self._db.transaction(principal.account_id) as conn:
            abandoned = await storage.abandon_stale(conn, before=now - timedelta(hours=hours), now=now)
        if abandoned:
            metrics.SWEEP_ABANDONED.inc(abandoned)
            log.info(
                "abandoned stale walks",
                extra={"fields": {"account_id": str(principal.account_id), "count": abandoned}},
            )
        return abandoned, hours

    async def sweep_all(self) -> int:
        """One round over every account with active walks (counted in
        ``flowpilot_sweep_*``); returns the walks abandoned."""
        started = time.perf_counter()
        try:
            total = await self._sweep_all()
        except Exception:
            metrics.SWEEP_RUNS.labels("failed").inc()
            raise
        finally:
            metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)
        metrics.SWEEP_RUNS.labels("ok").inc()
        return total

    async def _sweep_all(self) -> int:
        assert self._credential is not None
        async with self._db.engine.connect() as conn:
            accounts = await storage.accounts_with_active_walks(conn)
        total = 0
        for account in accounts:
            try:
                total += (await self.sweep_account(self._credential.principal_for(account)))[0]
            except Exception:  # one account's failure must not stop the others
                metrics.SWEEP_ACCOUNT_FAILURES.inc()
                log.exception("sweep failed for an account", extra={"fields": {"account_id": str(account)}})
        return total
