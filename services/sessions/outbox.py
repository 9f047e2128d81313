"""Delivery of the sessions outbox: drafts for the library, after the caller left.

Rows are written in the transaction of the change that causes them (a
resolve), so no work is lost when the library is down. This worker finds the
accounts with due rows through ``sessions.outbox_accounts_due`` (a narrow
SECURITY DEFINER function: the service's own login cannot see across
tenants), then, per account and under that account's RLS, locks due rows
(``FOR UPDATE SKIP LOCKED``: replicas never deliver the same row at once) and
calls the library as the sessions service for that one account, with a
60-second service token. Failures back off exponentially (with jitter) up to
a cap. The library's import is idempotent, so a redelivery is harmless.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta
from typing import Any

import grpc
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from opentelemetry import propagate, trace
from sqlalchemy import func, select, text, update

from services.core.auth import ServiceCredential
from services.core.background import Periodic
from services.core.db import Database
from services.sessions.tables import outbox

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
    ) -> None:
        self._db = db
        self._library = library
        self._credential = credential
        self._base = base_backoff_seconds
        self._max = max_backoff_seconds
        self._batch = batch
        self._timeout = call_timeout_seconds
        self.runner = Periodic(
            "outbox-delivery",
            self.deliver_due,
            poll_seconds,
            first_round_now=True,
            enabled=credential is not None,
            off_reason="no service key (FLOWPILOT_SERVICE_PRIVATE_KEY)",
        )

    def kick(self) -> None:
        """Deliver soon (after a resolve), without waiting for the next poll."""
        self.runner.kick()

    async def deliver_due(self) -> int:
        """One round over every account with due rows; returns rows delivered."""
        async with self._db.engine.connect() as conn:
            accounts = (
                (await conn.execute(text("SELECT * FROM sessions.outbox_accounts_due(100)"))).scalars().all()
            )
        delivered = 0
        for account in accounts:
            delivered += await self._deliver_account(account)
        return delivered

    def _backoff(self, attempts: int) -> float:
        return float(min(self._max, self._base * 2 ** min(attempts, 20)) * random.uniform(0.75, 1.0))  # noqa: S311

    async def _deliver_account(self, account: uuid.UUID) -> int:
        assert self._credential is not None
        token = self._credential.token_for(account)
        delivered = 0
        async with self._db.transaction(account) as conn:
            rows = (
                await conn.execute(
                    select(outbox)
                    .where(outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= func.now())
                    .order_by(outbox.c.create_time)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                error = await self._send(row, token)
                if error is None:
                    values: dict[str, Any] = {
                        "delivered_at": func.now(),
                        "attempts": row.attempts + 1,
                        "last_error": None,
                    }
                    delivered += 1
                else:
                    wait = timedelta(seconds=self._backoff(row.attempts))
                    values = {
                        "attempts": row.attempts + 1,
                        "last_error": error,
                        "next_attempt_at": func.now() + wait,
                    }
                    log.warning(
                        "outbox delivery failed",
                        extra={"fields": {"topic": row.topic, "error": error, "attempts": row.attempts + 1}},
                    )
                await conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
        return delivered

    async def _send(self, row: Any, token: str) -> str | None:
        if row.topic != TOPIC_LIBRARY_DRAFTS:
            return f"unknown topic {row.topic}"
        payload = row.payload
        request = library_pb2.ImportSessionScriptsRequest(
            session=payload["session"],
            resolved_by=payload["resolved_by"],
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
        with tracer.start_as_current_span(
            "outbox deliver " + row.topic, context=propagate.extract(row.trace)
        ):
            try:
                await self._library.ImportSessionScripts(
                    request, metadata=(("authorization", f"Bearer {token}"),), timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name}: {exc.details()}"[:500]
        return None
