"""Per-account token buckets: how often one account may do an expensive thing.

A bucket holds at most ``burst`` tokens and refills at ``per_minute / 60``
tokens a second; each call takes one token or is refused with the seconds
until the next one. A refused call takes nothing, so a client that keeps
retrying is not pushed further back.

The buckets live in this process: with N replicas of a service, an account may
make up to N times the configured rate (the limit is per replica).

Memory is bounded. A bucket left alone for ``burst / rate`` seconds is full
again, which is exactly a new bucket, so it expires then (a TTL from its last
token taken); and at most ``max_keys`` buckets are kept, the least recently
used dropped first (an account dropped early only starts again full).

Not locked: ``take`` never awaits, so on one event loop it is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True, slots=True)
class _Bucket:
    tokens: float
    at: float  # clock reading when ``tokens`` was counted


class TokenBuckets:
    """One token bucket per key (an account id), bounded in number."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.per_minute = per_minute
        self.burst = burst
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: TTLCache[Hashable, _Bucket] = TTLCache(
            maxsize=max_keys, ttl=burst / self._rate, timer=clock
        )

    def take(self, key: Hashable) -> float:
        """Takes a token of ``key``'s bucket: 0.0 when granted, otherwise the
        seconds until one will be there (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        tokens = (
            float(self.burst)
            if bucket is None
            else min(float(self.burst), bucket.tokens + (now - bucket.at) * self._rate)
        )
        if tokens >= 1.0:
            self._buckets[key] = _Bucket(tokens - 1.0, now)
            return 0.0
        return (1.0 - tokens) / self._rate

    def __len__(self) -> int:
        """Buckets held now (expired ones are not counted)."""
        self._buckets.expire()
        return len(self._buckets)
