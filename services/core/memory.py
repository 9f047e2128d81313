"""glibc's allocator, tuned for a service that handles messages of megabytes.

By default glibc keeps what a process freed: the threshold above which a
block is mapped on its own rises to 32 MiB once such blocks are freed, and
the heap is given back only from its top. A service that once decoded a few
4 MiB requests would keep their memory for good (measured: 120 MB kept after
24 refused 4 MiB flows, all of it returned by a trim). Off glibc both
functions do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import weakref

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def tune() -> None:
    """Blocks of 128 KiB or more mapped on their own (given back when freed),
    and two arenas rather than eight per core for gRPC's threads. Call it at
    start, before threads."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(_M_ARENA_MAX, 2)


def give_back() -> None:
    """Returns the free memory of the heap to the system (a few milliseconds;
    after a large request, not after every one)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# Per event loop, the trim waiting to run (a loop that closes takes its entry with it).
_scheduled: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.TimerHandle] = (
    weakref.WeakKeyDictionary()
)


def give_back_soon(delay: float = 0.2) -> None:
    """``give_back`` once, ``delay`` seconds from now (after what a call still
    held, its request and its reply, has been freed), on the running loop;
    calls meanwhile share that one trim."""
    loop = asyncio.get_running_loop()
    if loop not in _scheduled:
        _scheduled[loop] = loop.call_later(delay, _trim, loop)


def _trim(loop: asyncio.AbstractEventLoop) -> None:
    _scheduled.pop(loop, None)
    give_back()
