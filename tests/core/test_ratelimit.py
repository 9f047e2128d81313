"""The per-account token buckets, on a clock the tests move, and the error
they become at the AI facade."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import status_pb2

from services.core.ai import AIConfig, Preferences, make_ai
from services.core.ai.offline import OfflineBackend
from services.core.auth import Principal, Role, bind_principal, unbind_principal
from services.core.errors import ResourceExhausted, to_grpc_status
from services.core.ratelimit import TokenBuckets
from tests.support import retry_delay


class Clock:
    """A monotonic clock in seconds that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused_with_the_wait_for_one_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=6, burst=3, clock=clock)  # one token per 10 s
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)
    clock.now += 4
    assert buckets.take("a") == pytest.approx(6.0)  # a refusal takes nothing


def test_refills_at_the_rate_and_never_above_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=2, clock=clock)
    assert buckets.take("a") == 0.0 and buckets.take("a") == 0.0
    clock.now += 1.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 3600  # a long quiet spell still refills to the burst only
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_accounts_do_not_share_a_bucket() -> None:
    buckets = TokenBuckets(per_minute=1, burst=1, clock=Clock())
    first, second = uuid.uuid4(), uuid.uuid4()
    assert buckets.take(first) == 0.0
    assert buckets.take(first) > 0
    assert buckets.take(second) == 0.0


def test_buckets_are_bounded_and_idle_ones_dropped() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=5, max_keys=3, clock=clock)
    for key in range(10):
        buckets.take(key)
    assert len(buckets) == 3
    clock.now += 5.0  # burst / rate: every bucket is full again, so none is kept
    assert len(buckets) == 0
    assert buckets.take(0) == 0.0


def test_rejects_a_meaningless_limit() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        TokenBuckets(per_minute=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(per_minute=1, burst=0)


def _retry_info(status: grpc.Status) -> float | None:
    return retry_delay(
        status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    )


def test_a_retry_delay_is_sent_as_retry_info() -> None:
    limited = to_grpc_status(ResourceExhausted("slow down", retry_delay=2.5), domain="test")
    assert limited.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _retry_info(limited) == 2.5
    assert _retry_info(to_grpc_status(ResourceExhausted("full"), domain="test")) is None


async def test_the_facade_limits_each_account_and_zero_turns_it_off() -> None:
    ai = make_ai(AIConfig(calls_per_minute=1, burst=2), backend=OfflineBackend())
    account = uuid.uuid4()
    token = bind_principal(Principal(user_id=uuid.uuid4(), account_id=account, role=Role.ENGINEER, token=""))
    try:
        await ai.build_decision_tree("Printer offline", Preferences())
        await ai.build_decision_tree("Printer offline", Preferences())
        with pytest.raises(ResourceExhausted) as refused:
            await ai.build_decision_tree("Printer offline", Preferences())
    finally:
        unbind_principal(token)
    assert refused.value.reason == "AI_RATE_LIMITED"
    assert refused.value.retry_delay == pytest.approx(60.0, abs=1.0)
    assert refused.value.metadata["retry_after_seconds"] in {"59", "60"}

    unlimited = make_ai(AIConfig(calls_per_minute=0), backend=OfflineBackend())
    for _ in range(50):  # and no principal needed: nothing to charge
        await unlimited.build_decision_tree("Printer offline", Preferences())
