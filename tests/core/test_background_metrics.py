"""Background work under observation: failures in a row are logged without
flooding; the outbox's figures, model calls and sweep rounds reach metrics."""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai import make_ai
from services.core.ai.offline import OfflineBackend
from services.core.ai.service import Preferences
from services.core.ai.types import ScriptDraft, SessionContext
from services.core.auth import Principal, Role, ServiceCredential, bind_principal, unbind_principal
from services.core.background import Periodic
from services.core.db import Database
from services.core.errors import ResourceExhausted
from services.sessions.outbox import OutboxDelivery
from services.walks.sweep import StaleWalkSweep
from tests.support import Keys, RunDatabase


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_failing_rounds_log_one_traceback_then_a_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failing = [True]

    async def work() -> None:
        if failing[0]:
            raise ConnectionRefusedError("database down")

    periodic = Periodic("unit-worker", work, 2.0, first_round_now=True, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="flowpilot.background")
    for _ in range(31):  # a minute of rounds every 2 s, and one
        await periodic.run_round()
        now[0] += 2.0
    records = [r for r in caplog.records if r.name == "flowpilot.background"]
    assert [r.levelname for r in records] == ["ERROR", "WARNING"]
    assert records[0].exc_info is not None  # the first has its traceback
    assert records[1].exc_info is None
    assert records[1].fields["failed_rounds"] == 31  # type: ignore[attr-defined]
    assert records[1].fields["since_last_line"] == 30  # type: ignore[attr-defined]
    assert records[1].fields["error"] == "ConnectionRefusedError"  # type: ignore[attr-defined]
    failing[0] = False
    await periodic.run_round()
    assert caplog.records[-1].levelname == "INFO" and "again" in caplog.records[-1].getMessage()
    failing[0] = True
    await periodic.run_round()  # a new streak starts with a traceback again
    assert caplog.records[-1].levelname == "ERROR"


async def test_outbox_figures_come_from_every_account(database: RunDatabase) -> None:
    db = Database.connect(database.runtime_url("sessions"), pool_size=1, read_pool_size=1)
    admin = create_async_engine(database.admin_url)
    delivery = OutboxDelivery(db, None, None)  # type: ignore[arg-type]  # no delivery here
    accounts = [uuid.uuid4(), uuid.uuid4()]
    try:
        before = await delivery.refresh_stats()
        async with admin.begin() as conn:
            for account, is_dead in ((accounts[0], False), (accounts[1], True)):
                await conn.execute(
                    text(
                        "INSERT INTO sessions.outbox (account_id, id, topic, dedupe_key, payload, "
                        "next_attempt_time, create_time, dead_time) VALUES (:a, :i, 'unit', :k, '{}', "
                        "now() + interval '1 day', now() - interval '2 hours', "
                        "CASE WHEN :dead THEN now() END)"
                    ),
                    {"a": account, "i": uuid.uuid4(), "k": str(uuid.uuid4()), "dead": is_dead},
                )
        pending, age, dead = await delivery.refresh_stats()
        assert pending == before[0] + 1 and dead == before[2] + 1
        assert age >= 7200
        assert sample("flowpilot_outbox_pending") == pending
        assert sample("flowpilot_outbox_dead_letters") == dead
        assert sample("flowpilot_outbox_oldest_pending_age_seconds") == age
    finally:
        async with admin.begin() as conn:
            await conn.execute(
                text("DELETE FROM sessions.outbox WHERE account_id = ANY(:a)"), {"a": accounts}
            )
        await admin.dispose()
        await db.dispose()


async def test_model_calls_are_counted_by_task_tier_and_outcome() -> None:
    ai = make_ai(backend=OfflineBackend())
    principal = Principal(user_id=uuid.uuid4(), account_id=uuid.uuid4(), role=Role.ENGINEER, token="")
    token = bind_principal(principal)
    labels = {"task": "templatize_script", "tier": "fast", "backend": OfflineBackend.name}
    calls = sample("flowpilot_ai_model_calls_total", **labels, outcome="ok")
    timed = sample("flowpilot_ai_model_call_duration_seconds_count", **labels)
    tree = sample(
        "flowpilot_ai_model_calls_total",
        task="decision_tree",
        tier="deep",
        backend=OfflineBackend.name,
        outcome="ok",
    )
    limited = sample("flowpilot_ai_rate_limited_total")
    try:
        await ai.templatize_script(
            ScriptDraft(body="Get-Service spooler", language="powershell"), Preferences()
        )
        await ai.build_decision_tree("printer offline", Preferences())
        ctx = SessionContext(ticket_ref="CW #1", title="t", problem="p")
        await ai.suggest_fix(ctx, Preferences(tier="deep"))
        for _ in range(17):  # the rest of the burst of 20
            await ai.suggest_fix(ctx, Preferences(tier="fast"))
        with pytest.raises(ResourceExhausted):
            await ai.suggest_fix(ctx, Preferences(tier="fast"))
    finally:
        unbind_principal(token)
    assert sample("flowpilot_ai_model_calls_total", **labels, outcome="ok") == calls + 1
    assert sample("flowpilot_ai_model_call_duration_seconds_count", **labels) == timed + 1
    assert (
        sample(
            "flowpilot_ai_model_calls_total",
            task="decision_tree",
            tier="deep",
            backend=OfflineBackend.name,
            outcome="ok",
        )
        == tree + 1
    )
    assert sample("flowpilot_ai_rate_limited_total") == limited + 1


async def test_sweep_rounds_are_counted(database: RunDatabase, service_keys: dict[str, Keys]) -> None:
    credential = ServiceCredential(
        service="walks", private_key=service_keys["walks"].private_pem, audience="flowpilot"
    )
    db = Database.connect(database.runtime_url("walks"), pool_size=1, read_pool_size=1)
    broken = Database.connect("postgresql+asyncpg://nobody@127.0.0.1:1/nowhere", pool_size=1, pool_timeout=1)
    ok, failed = (
        sample("flowpilot_sweep_runs_total", outcome="ok"),
        sample("flowpilot_sweep_runs_total", outcome="failed"),
    )
    try:
        await StaleWalkSweep(db, None, credential).sweep_all()  # type: ignore[arg-type]  # no account to read settings for
        with pytest.raises((OSError, DBAPIError)):
            await StaleWalkSweep(broken, None, credential).sweep_all()  # type: ignore[arg-type]
    finally:
        await db.dispose()
        await broken.dispose()
    assert sample("flowpilot_sweep_runs_total", outcome="ok") == ok + 1
    assert sample("flowpilot_sweep_runs_total", outcome="failed") == failed + 1
