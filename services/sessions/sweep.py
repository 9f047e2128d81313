"""The stale-session sweep: active sessions with no change (``update_time``)
for the account's ``sessions.stale_after_hours`` (default 72) are abandoned.

It never uses a BYPASSRLS login: the accounts to look at come from
``sessions.accounts_with_stale_sessions`` (a narrow SECURITY DEFINER function
that returns account ids only, of accounts with an active session unchanged
for at least the setting's smallest value). Each account is then swept as
the sessions service acting for that account alone (a short-lived service
token reads the account's setting), under that account's RLS, in short
transactions of its own (at most ``batch`` sessions each); no transaction
spans two accounts, and one account's failure does not stop the others.

A swept session is abandoned like any other (its state version moves, its
end time is the sweep's clock), with the sweep recorded as its closer and
the reason in ``abandon_reason``. Sweeping again changes nothing: only
active sessions are stale, and a session changed meanwhile is left alone.
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
from services.sessions import storage
from services.sessions.handoff import SWEEP

log = logging.getLogger("flowpilot.sessions.sweep")

SETTING = "sessions.stale_after_hours"
# The setting's smallest value (the settings catalogue's bound): no session
# unchanged for less than this is stale in any account.
SHORTEST_HOURS = 1


def reason(hours: int) -> str:
    return f"No change for {hours} hours: abandoned by the stale-session sweep ({SETTING})."


class StaleSessionSweep:
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
        self._db = db
        self._settings = settings
        self._credential = credential
        self._clock = clock
        self._batch = batch
        self.runner = Periodic(
            "stale-session-sweep",
            self.sweep_all,
            interval_seconds,
            first_round_now=False,
            enabled=credential is not None,
            off_reason="no service key (FLOWPILOT_SERVICE_PRIVATE_KEY)",
        )

    async def sweep_account(self, principal: Principal) -> tuple[int, int]:
        """(sessions abandoned, hours used) for the principal's account."""
        token = bind_principal(principal)
        try:
            hours = await self._settings.number(SETTING)
        finally:
            unbind_principal(token)
        now = self._clock()
        idle_since = now - timedelta(hours=hours)
        abandoned = 0
        while True:
            async with self._db.transaction(principal.account_id) as conn:
                count = await storage.abandon_stale(
                    conn,
                    idle_since=idle_since,
                    end_time=now,
                    closed_by=SWEEP.id,
                    closed_by_name=SWEEP.name or "",
                    reason=reason(hours),
                    limit=self._batch,
                )
            abandoned += count
            if count < self._batch:
                break
        if abandoned:
            metrics.SESSION_SWEEP_ABANDONED.inc(abandoned)
            log.info(
                "abandoned stale sessions",
                extra={"fields": {"account_id": str(principal.account_id), "count": abandoned}},
            )
        return abandoned, hours

    async def sweep_all(self) -> int:
        """One round over every account with a possibly stale session (counted
        in ``flowpilot_session_sweep_*``); returns the sessions abandoned."""
        started = time.perf_counter()
        try:
            total = await self._sweep_all()
        except Exception:
            metrics.SESSION_SWEEP_RUNS.labels("failed").inc()
            raise
        finally:
            metrics.SESSION_SWEEP_SECONDS.observe(time.perf_counter() - started)
        metrics.SESSION_SWEEP_RUNS.labels("ok").inc()
        return total

    async def _sweep_all(self) -> int:
        assert self._credential is not None
        idle_since = self._clock() - timedelta(hours=SHORTEST_HOURS)
        async with self._db.engine.connect() as conn:
            accounts = await storage.accounts_with_stale_sessions(conn, idle_since=idle_since)
        total = 0
        for account in accounts:
            try:
                total += (await self.sweep_account(self._credential.principal_for(account)))[0]
            except Exception:  # one account's failure must not stop the others
                metrics.SESSION_SWEEP_ACCOUNT_FAILURES.inc()
                log.exception("sweep failed for an account", extra={"fields": {"account_id": str(account)}})
        return total
