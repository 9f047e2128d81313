"""Work a service runs beside its server, in a task of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("flowpilot.background")


class Periodic:
    """Runs ``work`` every ``interval_seconds`` (sooner after :meth:`kick`)
    from :meth:`start` to :meth:`stop`. A failed round is logged and the next
    one runs anyway. Without ``enabled`` it only says why it is off.

    Failures in a row are logged without flooding: the first with its
    traceback (ERROR), then at most one line per ``error_log_seconds``
    (WARNING, how many rounds failed since, and the last error's type), and
    one line when a round succeeds again."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval_seconds: float,
        *,
        first_round_now: bool,
        enabled: bool = True,
        off_reason: str = "",
        error_log_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._work = work
        self._interval = interval_seconds
        self._first_now = first_round_now
        self._enabled = enabled
        self._off_reason = off_reason
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error_log_seconds = error_log_seconds
        self._clock = clock
        self._failures = 0  # rounds failed in a row
        self._unlogged = 0  # of which not logged yet
        self._logged_at = 0.0

    def kick(self) -> None:
        """Run a round soon, without waiting for the interval."""
        self._wake.set()

    def start(self) -> None:
        if not self._enabled:
            log.warning("%s is off: %s", self.name, self._off_reason)
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        if not self._first_now:
            await self._sleep()
        while True:
            await self.run_round()
            await self._sleep()

    async def run_round(self) -> None:
        """One round, its failure logged (rate-limited) rather than raised."""
        try:
            await self._work()
        except Exception as error:  # the worker must outlive any one failure
            self._failed(error)
            return
        if self._failures:
            log.info(
                "%s: round succeeded again",
                self.name,
                extra={"fields": {"worker": self.name, "failed_rounds": self._failures}},
            )
            self._failures = self._unlogged = 0

    def _failed(self, error: Exception) -> None:
        self._failures += 1
        now = self._clock()
        if self._failures == 1:
            log.exception("%s: round failed", self.name, extra={"fields": {"worker": self.name}})
            self._logged_at = now
            return
        self._unlogged += 1
        if now - self._logged_at >= self._error_log_seconds:
            log.warning(
                "%s: rounds still failing",
                self.name,
                extra={
                    "fields": {
                        "worker": self.name,
                        "failed_rounds": self._failures,
                        "since_last_line": self._unlogged,
                        # Types only: a driver's text may quote SQL and its parameters.
                        "error": _kind(error),
                    }
                },
            )
            self._logged_at = now
            self._unlogged = 0

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._interval)
        self._wake.clear()


def _kind(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return type(error).__name__ + (f" from {type(cause).__name__}" if cause is not None else "")
