"""The stale-walk sweep: active walks with no step for the account's
``walks.stale_after_hours`` are abandoned.

It never uses a BYPASSRLS login: the accounts to look at come from
``walks.accounts_with_active_walks`` (a narrow SECURITY DEFINER function that
returns account ids only); each account is then swept under its own RLS,
acting as the walks service for that account (a short-lived service token,
used to read the account's setting from the settings service).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.core import metrics
from services.core.sweep import StaleSweep, SweepMetrics
from services.walks import storage
from services.walks.storage import Connection

METRICS = SweepMetrics(
    runs=metrics.SWEEP_RUNS,
    seconds=metrics.SWEEP_SECONDS,
    account_failures=metrics.SWEEP_ACCOUNT_FAILURES,
    abandoned=metrics.SWEEP_ABANDONED,
)


class StaleWalkSweep(StaleSweep):
    name = "stale-walk-sweep"
    what = "walks"
    setting = "walks.stale_after_hours"
    metrics = METRICS

    async def accounts(self, conn: Connection, now: datetime) -> list[uuid.UUID]:
        return await storage.accounts_with_active_walks(conn)

    async def abandon(self, account: uuid.UUID, *, hours: int, now: datetime) -> int:
        async with self._db.transaction(account) as conn:
            return await storage.abandon_stale(conn, before=now - timedelta(hours=hours), now=now)
