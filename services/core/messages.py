"""Small helpers for filling protobuf messages from stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def set_time(message: Any, field: str, value: datetime | str | None) -> None:
    """Sets a Timestamp field from a datetime or ISO-8601 text; None leaves it unset."""
    if value is None:
        return
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)
    getattr(message, field).CopyFrom(stamp)
