"""Delivery of the sessions outbox: drafts for the library, after the caller left.

Rows are written in the transaction of the change that causes them (a
resolve), one per script so that each message stays small, and no work is
lost when the library is down. This worker finds the accounts with due rows
through ``sessions.outbox_accounts_due`` (a narrow SECURITY DEFINER function:
the service's own login cannot see across tenants), then, per account and
under that account's RLS:

1. claims due rows in one short transaction (``FOR UPDATE SKIP LOCKED``, and a
   lease: ``next_attempt_time`` moves past the call's timeout, so replicas never
   deliver the same row at once and a worker killed mid-call leaves the row
   due again when the lease ends);
2. calls the library as the sessions service for that one account, outside
   any transaction, with a fresh 60-second service token per call;
3. records each outcome in another short transaction.

Failures back off exponentially (with jitter) up to a cap; after
``max_attempts`` (or at once, for an error no retry can mend) the row becomes
a dead letter (``dead_time`` set, never due again), listed and retried by team
admins (``ListDeadLetters``, ``RetryDeadLetter``). The library's import is
idempotent, so a redelivery is harmless.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import grpc
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from opentelemetry import propagate, trace

from services.core import metrics
from services.core.auth import ServiceCredential
from services.core.background import Periodic
from services.core.db import Database
from services.core.errors import Unavailable
from services.sessions import outbox_storage
from services.sessions.rows import OutboxMessage

log = logging.getLogger("flowpilot.sessions.outbox")
tracer = trace.get_tracer("flowpilot.sessions.outbox")

TOPIC_LIBRARY_DRAFTS = "library.import_session_scripts"
LANGUAGES = {
    "powershell": library_pb2.LANGUAGE_POWERSHELL,
    "bash": library_pb2.LANGUAGE_BASH,
    "python": library_pb2.LANGUAGE_PYTHON,
    "cmd": library_pb2.LANGUAGE_CMD,
}


def trace_carrier() -> dict[str, str]:
    """The current W3C trace context, to continue the trace on delivery."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class OutboxDelivery:
    def __init__(
        self,
        db: Database,
        library: library_pb2_grpc.LibraryServiceAsyncStub,
        credential: ServiceCredential | None,
        *,
        poll_seconds: float = 2.0,
        base_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 300.0,
        batch: int = 20,
        call_timeout_seconds: float = 10.0,
        max_attempts: int = 12,
        stats_seconds: float = 15.0,
        lease_seconds: float | None = None,
    ) -> None:
        self._db = db
        self._library = library
        self._credential = credential
        self._base = base_backoff_seconds
        self._max = max_backoff_seconds
        self._batch = batch
        self._timeout = call_timeout_seconds
        self._max_attempts = max_attempts
        # A claimed batch is due again after this, should its worker die
        # mid-batch: longer than the batch can take, one call after another.
        self._lease = timedelta(
            seconds=lease_seconds if lease_seconds is not None else batch * call_timeout_seconds + 30
        )
        self.runner = Periodic(
            "outbox-delivery",
            self.deliver_due,
            poll_seconds,
            first_round_now=True,
            enabled=credential is not None,
            off_reason="no service key (FLOWPILOT_SERVICE_PRIVATE_KEY)",
        )
        # The outbox's figures for metrics, read whether or not this replica delivers.
        self.stats_runner = Periodic("outbox-stats", self.refresh_stats, stats_seconds, first_round_now=True)

    async def refresh_stats(self) -> tuple[int, float, int]:
        """(rows pending, age of the oldest in seconds, dead letters) over every
        account, through ``sessions.outbox_stats`` (aggregates only), into the
        ``flowpilot_outbox_*`` gauges."""
        pending, age, dead = await outbox_storage.outbox_stats(self._db.engine)
        metrics.OUTBOX_PENDING.set(pending)
        metrics.OUTBOX_OLDEST_AGE.set(age)
        metrics.OUTBOX_DEAD.set(dead)
        return pending, age, dead

    def kick(self) -> None:
        """Deliver soon (after a resolve), without waiting for the next poll."""
        self.runner.kick()

    async def deliver_due(self) -> int:
        """One round over every account with due rows; returns rows delivered."""
        accounts = await outbox_storage.outbox_accounts_due(self._db.engine)
        delivered = 0
        for account in accounts:
            try:
                delivered += await self._deliver_account(account)
            except Unavailable:
                raise  # the database is down: the round ends, the runner backs off
            except Exception:
                # One account's trouble never holds up the others' deliveries.
                log.exception(
                    "outbox delivery failed for an account", extra={"fields": {"account": str(account)}}
                )
        return delivered

    def _backoff(self, attempts: int) -> float:
        return float(min(self._max, self._base * 2 ** min(attempts, 20)) * random.uniform(0.75, 1.0))  # noqa: S311

    async def _deliver_account(self, account: uuid.UUID) -> int:
        assert self._credential is not None
        async with self._db.transaction(account) as conn:
            messages = await outbox_storage.claim_outbox(conn, batch=self._batch, lease=self._lease)
        delivered = 0
        for message in messages:
            failure = await self._send(message, self._credential.token_for(account))
            async with self._db.transaction(account) as conn:
                outcome = self._outcome(message, failure)
                await outbox_storage.record_delivery(
                    conn,
                    message,
                    outcome=outcome,
                    last_error=failure.text if failure is not None else None,
                    retry_after=timedelta(seconds=self._backoff(message.attempts))
                    if outcome == "retry"
                    else timedelta(0),
                )
            delivered += failure is None
        return delivered

    def _outcome(
        self, message: OutboxMessage, failure: Failure | None
    ) -> Literal["delivered", "dead", "retry"]:
        """What one attempt comes to, counted and logged."""
        attempts = message.attempts + 1
        if failure is None:
            metrics.OUTBOX_DELIVERIES.labels("delivered").inc()
            return "delivered"
        fields = {"topic": message.topic, "error": failure.text, "attempts": attempts}
        if failure.permanent or attempts >= self._max_attempts:
            metrics.OUTBOX_DELIVERIES.labels("dead_letter").inc()
            log.error("outbox delivery gave up: a dead letter", extra={"fields": fields})
            return "dead"
        metrics.OUTBOX_DELIVERIES.labels("retry").inc()
        log.warning("outbox delivery failed", extra={"fields": fields})
        return "retry"

    async def _send(self, row: OutboxMessage, token: str) -> Failure | None:
        if row.topic != TOPIC_LIBRARY_DRAFTS:
            return Failure(f"unknown topic {row.topic}", permanent=True)
        payload = row.payload
        try:
            request = library_pb2.ImportSessionScriptsRequest(
                session=payload["session"],
                resolved_by=payload["resolved_by"],
                # Absent from work queued before names were recorded.
                resolved_by_display_name=payload.get("resolved_by_display_name", ""),
                ticket_ref=payload["ticket_ref"],
                scripts=[
                    library_pb2.SessionScript(
                        lane_item=s["lane_item"],
                        script_body=s["script_body"],
                        language=LANGUAGES[s["language"]],
                        title=s["title"],
                    )
                    for s in payload["scripts"]
                ],
            )
        except (KeyError, TypeError, ValueError) as exc:
            return Failure(
                f"the recorded payload cannot be sent: {type(exc).__name__} {exc}"[:500], permanent=True
            )
        with tracer.start_as_current_span(
            "outbox deliver " + row.topic, context=propagate.extract(row.trace)
        ):
            try:
                await self._library.ImportSessionScripts(
                    request, metadata=(("authorization", f"Bearer {token}"),), timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                return Failure(
                    f"{exc.code().name}: {exc.details()}"[:500], permanent=exc.code() in _PERMANENT
                )
        return None


@dataclass(frozen=True, slots=True)
class Failure:
    text: str
    permanent: bool  # no retry can mend it: a dead letter at once


# The library refused the request itself: sending it again changes nothing.
_PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
