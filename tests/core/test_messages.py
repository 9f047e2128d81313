"""Timestamps set from stored values exactly as protobuf's own conversion does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from flowpilot.sessions.v1 import sessions_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.core.messages import set_time


def test_set_time_matches_from_datetime_to_the_microsecond() -> None:
    rng = random.Random(7)
    start = datetime(1900, 1, 1, tzinfo=UTC)
    for _ in range(2_000):
        moment = start + timedelta(microseconds=rng.randrange(0, 300 * 365 * 86_400 * 10**6))
        zone = timezone(timedelta(minutes=rng.choice([-600, -330, 0, 60, 345])))
        for value in (moment, moment.astimezone(zone), moment.replace(tzinfo=None), moment.isoformat()):
            fact = sessions_pb2.Fact()
            set_time(fact, "create_time", value)
            expected = Timestamp()
            expected.FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)
            assert fact.create_time == expected, value


def test_set_time_leaves_the_field_unset_for_none() -> None:
    fact = sessions_pb2.Fact()
    set_time(fact, "delete_time", None)
    assert not fact.HasField("delete_time")
