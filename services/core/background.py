"""Work a service runs beside its server, in a task of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("flowpilot.background")


class Periodic:
    """Runs ``work`` every ``interval_seconds`` (sooner after :meth:`kick`)
    from :meth:`start` to :meth:`stop`. A failed round is logged and the next
    one runs anyway. Without ``enabled`` it only says why it is off."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval_seconds: float,
        *,
        first_round_now: bool,
        enabled: bool = True,
        off_reason: str = "",
    ) -> None:
        self.name = name
        self._work = work
        self._interval = interval_seconds
        self._first_now = first_round_now
        self._enabled = enabled
        self._off_reason = off_reason
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
            try:
                await self._work()
            except Exception:  # the worker must outlive any one failure
                log.exception("%s: round failed", self.name)
            await self._sleep()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._interval)
        self._wake.clear()
