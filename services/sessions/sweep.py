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

import uuid
from datetime import datetime, timedelta

from services.core import metrics
from services.core.sweep import StaleSweep, SweepMetrics
from services.sessions import storage
from services.sessions.handoff import SWEEP
from services.sessions.storage import Connection

SETTING = "sessions.stale_after_hours"
# The setting's smallest value (the settings catalogue's bound): no session
# unchanged for less than this is stale in any account.
SHORTEST_HOURS = 1
METRICS = SweepMetrics(
    runs=metrics.SESSION_SWEEP_RUNS,
    seconds=metrics.SESSION_SWEEP_SECONDS,
    account_failures=metrics.SESSION_SWEEP_ACCOUNT_FAILURES,
    abandoned=metrics.SESSION_SWEEP_ABANDONED,
)


def reason(hours: int) -> str:
    return f"No change for {hours} hours: abandoned by the stale-session sweep ({SETTING})."


class StaleSessionSweep(StaleSweep):
    name = "stale-session-sweep"
    what = "sessions"
    setting = SETTING
    metrics = METRICS

    async def accounts(self, conn: Connection, now: datetime) -> list[uuid.UUID]:
        return await storage.accounts_with_stale_sessions(
            conn, idle_since=now - timedelta(hours=SHORTEST_HOURS)
        )

    async def abandon(self, account: uuid.UUID, *, hours: int, now: datetime) -> int:
        """In transactions of at most ``batch`` sessions each."""
        abandoned = 0
        while True:
            async with self._db.transaction(account) as conn:
                count = await storage.abandon_stale(
                    conn,
                    idle_since=now - timedelta(hours=hours),
                    end_time=now,
                    closed_by=SWEEP.id,
                    closed_by_name=SWEEP.name or "",
                    reason=reason(hours),
                    limit=self._batch,
                )
            abandoned += count
            if count < self._batch:
                return abandoned
