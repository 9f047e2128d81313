"""The monthly AI token budget over a real channel: copilot replies counted
per account and month, the copilot refused once the month is spent (with its
reset time), usage read by team admins only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.core.ai import make_ai
from services.core.ai.offline import OfflineBackend
from services.core.auth import Role
from services.sessions import usage
from services.sessions.rows import AiUsage
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from tests.conftest import FakeClock, service_config_kwargs
from tests.sessions.helpers import Caller
from tests.support import Keys, RunDatabase, expect_error, running


def send(caller: Caller, session: pb.Session, text: str = "What next?") -> Any:
    return caller.call(
        "SendMessage", pb.SendMessageRequest(parent=session.name, message=pb.Message(text=text))
    )


def usage_of(caller: Caller, name: str = "aiUsage/current") -> Any:
    return caller.as_role(Role.TEAM_ADMIN).call("GetAiUsage", pb.GetAiUsageRequest(name=name))


async def set_budget(settings_channel: grpc.aio.Channel, caller: Caller, tokens: int) -> None:
    await settings_pb2_grpc.SettingsServiceStub(settings_channel).UpdateSetting(
        settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/ai.monthly_token_budget", value=struct_pb2.Value(number_value=tokens)
            )
        ),
        metadata=caller.as_role(Role.TEAM_ADMIN).md,
    )


def refusal(error: grpc.aio.AioRpcError) -> tuple[dict[str, str], float]:
    """(the ErrorInfo metadata, the RetryInfo delay) of a refusal."""
    status = rpc_status.from_call(error)
    assert status is not None
    metadata: dict[str, str] = {}
    delay = -1.0
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return metadata, delay


async def test_a_spent_budget_refuses_the_copilot_until_next_month(
    sessions_channel: grpc.aio.Channel, settings_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    before = await usage_of(me)
    assert (before.total_tokens, before.model_calls, before.budget_tokens, before.budget_spent) == (
        0,
        0,
        0,
        False,
    )

    # Unlimited (the default): replies are counted all the same.
    first = (await send(me, s)).reply
    counted = await usage_of(me)
    assert counted.input_tokens == first.input_tokens > 0
    assert counted.output_tokens == first.output_tokens > 0
    assert counted.total_tokens == first.input_tokens + first.output_tokens
    assert counted.model_calls == 1 and not counted.budget_spent

    # A budget below what was used: the next model call is refused, before it is made.
    await set_budget(settings_channel, me, counted.total_tokens)
    now = datetime.now(UTC)
    resets = usage.reset_time(usage.month_of(now))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(me, s)
    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "resets at " + resets.strftime("%Y-%m-%dT%H:%M:%SZ") in (error.details() or "")
    metadata, delay = refusal(error)
    assert metadata == {
        "reset_time": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "used_tokens": str(counted.total_tokens),
        "budget_tokens": str(counted.total_tokens),
    }
    assert abs(delay - (resets - now).total_seconds()) < 60
    await expect_error(send(me, s), grpc.StatusCode.RESOURCE_EXHAUSTED, reason="AI_TOKEN_BUDGET_SPENT")

    # Streamed: refused before the first event.
    async def first_event(call: Any) -> Any:
        async for event in call:
            return event

    streamed = me.stub.StreamMessage(
        pb.StreamMessageRequest(parent=s.name, message=pb.Message(text="and now?")), metadata=me.md
    )
    await expect_error(
        first_event(streamed), grpc.StatusCode.RESOURCE_EXHAUSTED, reason="AI_TOKEN_BUDGET_SPENT"
    )

    # Nothing stored, nothing counted for the refusals.
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert len(listed.messages) == 2
    spent = await usage_of(me)
    assert spent.model_calls == 1 and spent.budget_spent and spent.budget_tokens == counted.total_tokens
    assert spent.reset_time.ToDatetime(tzinfo=UTC) == resets
    assert spent.start_time.ToDatetime(tzinfo=UTC) == usage.month_start(usage.month_of(now))

    # The session's other AI work is not counted and never refused (a ticket can always be closed).
    await me.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))

    # Raised (or unlimited again): the copilot answers.
    await set_budget(settings_channel, me, 0)
    await send(me, s)
    assert (await usage_of(me)).model_calls == 2


async def test_usage_is_the_accounts_own_and_for_team_admins(
    sessions_channel: grpc.aio.Channel, settings_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    await send(me, s)
    await set_budget(settings_channel, me, 1)
    await expect_error(send(me, s), grpc.StatusCode.RESOURCE_EXHAUSTED, reason="AI_TOKEN_BUDGET_SPENT")

    # Another account: its own (empty) month, its own (unlimited) budget.
    other = Caller(sessions_channel, keys)
    theirs = await usage_of(other)
    assert (theirs.total_tokens, theirs.model_calls, theirs.budget_tokens) == (0, 0, 0)
    await send(other, await other.session())

    month = usage.month_of(datetime.now(UTC))
    named = await usage_of(me, usage.usage_name(month))
    assert named.name == usage.usage_name(month) == (await usage_of(me)).name
    assert named.model_calls == 1
    past = await usage_of(me, "aiUsage/2020-01")
    assert past.name == "aiUsage/2020-01" and past.total_tokens == 0 and past.budget_spent is False

    for role in (Role.VIEWER, Role.ENGINEER):
        await expect_error(
            me.as_role(role).call("GetAiUsage", pb.GetAiUsageRequest(name="aiUsage/current")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    for bad in (
        "",
        "aiUsage/2026-13",
        "aiUsage/26-01",
        "aiUsage/2026-1",
        "usage/2026-01",
        "aiUsage/now",
        "aiUsage/0000-01",  # no year 0
        "aiUsage/9999-12",  # its reset time would be in year 10000
    ):
        await expect_error(usage_of(me, bad), grpc.StatusCode.INVALID_ARGUMENT, field="name")


async def test_a_new_month_starts_afresh(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
    settings_channel: grpc.aio.Channel,
) -> None:
    clock = FakeClock()
    clock.now = datetime(2031, 12, 31, 23, 59, tzinfo=UTC)
    config = SessionsConfig(
        **service_config_kwargs(database, keys, "sessions", service_keys),
        settings_address=settings_address,
        settings_cache_seconds=0,
        library_address=library_address,
    )
    ai = make_ai(backend=OfflineBackend())
    async with (
        running(build_sessions, config, pool_size=4, ai=ai, clock=clock) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        me = Caller(channel, keys)
        s = await me.session()
        await send(me, s)
        await set_budget(settings_channel, me, 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(me, s)
        metadata, delay = refusal(caught.value)
        assert metadata["reset_time"] == "2032-01-01T00:00:00Z" and delay == 60

        clock.advance(minutes=2)
        await send(me, s)
        december = await usage_of(me, "aiUsage/2031-12")
        january = await usage_of(me)
        assert january.name == "aiUsage/2032-01" and january.model_calls == 1
        assert december.model_calls == 1 and december.budget_spent
        assert january.reset_time.ToDatetime(tzinfo=UTC) == datetime(2032, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "month", "resets"),
    [
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), date(2026, 12, 1), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 2, 1, tzinfo=UTC), date(2026, 2, 1), datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_months_are_utc_calendar_months(at: datetime, month: date, resets: datetime) -> None:
    assert usage.month_of(at) == month and usage.reset_time(month) == resets


def test_a_budget_of_zero_is_unlimited() -> None:
    now = datetime(2026, 5, 5, tzinfo=UTC)
    usage.require_budget(AiUsage(month=date(2026, 5, 1), input_tokens=10**9), 0, now)
    usage.require_budget(AiUsage(month=date(2026, 5, 1), input_tokens=9), 10, now)
