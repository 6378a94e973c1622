"""Time for the domain: the clock it reads and the scheduler it sets timers on.

Offers time out, ended chats are evicted from the cache and the inactivity sweep runs on
timers. They all go through a :class:`Scheduler`, so that a test can swap the event loop's
real seconds for :class:`SimulatedTime` and watch a timeout happen without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Milliseconds since the epoch."""

Callback = Callable[[], "Awaitable[None] | None"]
"""What a timer runs: a plain function, or one returning an awaitable (run as a task)."""


def wall_clock() -> int:
    return time.time_ns() // 1_000_000


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs callbacks later. ``delay_s`` 0 means as soon as the current work yields."""

    def now(self) -> int:
        """The scheduler's clock (ms): what the domain reads as the current time."""
        ...

    def call_later(self, delay_s: float, callback: Callback) -> Timer: ...

    async def close(self) -> None:
        """Cancel every timer and wait for the callbacks still running."""
        ...


class AsyncioScheduler:
    """Real time: the running event loop's timers; async callbacks run as tasks."""

    def __init__(self, clock: Clock = wall_clock) -> None:
        self._clock = clock
        self._handles: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def now(self) -> int:
        return self._clock()

    def call_later(self, delay_s: float, callback: Callback) -> Timer:
        if self._closed:  # asked by a callback finishing during close: nothing runs now
            return _NOT_SCHEDULED
        handle: asyncio.TimerHandle | None

        def fire() -> None:
            nonlocal handle
            if handle is not None:
                self._handles.discard(handle)
            # The handle holds this function, which holds the handle: a reference cycle that
            # only the garbage collector could free, one per timer (the router's "soon" runs
            # after every commit): 25% of a busy server's young garbage was these. Broken here.
            handle = None
            result = callback()
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        handle = scheduled = asyncio.get_running_loop().call_later(delay_s, fire)
        self._handles.add(scheduled)
        return scheduled  # cancelling it drops its callback, which breaks the cycle too

    async def close(self, grace_s: float = 5.0) -> None:
        """Cancel the timers not yet due and let the callbacks already running finish, for up
        to ``grace_s``; cancel what still runs then. Cancelled in the middle of a commit, a
        change may be stored and yet never applied here nor told to the other processes of
        a cluster (the store answered, nobody listened), so it gets the chance to end."""
        self._closed = True
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        if not self._tasks:
            return
        _, running = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


class _NotScheduled:
    def cancel(self) -> None:
        pass


_NOT_SCHEDULED = _NotScheduled()


@dataclass(order=True)
class _Entry:
    due_ms: int
    seq: int
    callback: Callback = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class SimulatedTime:
    """Simulated time for tests: nothing runs until :meth:`advance` moves the clock, which
    then runs every timer that came due, in order, awaiting async ones to the end."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms
        self._queue: list[_Entry] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self.now_ms

    def call_later(self, delay_s: float, callback: Callback) -> Timer:
        entry = _Entry(self.now_ms + max(0, round(delay_s * 1000)), next(self._seq), callback)
        heapq.heappush(self._queue, entry)
        return entry

    @property
    def pending(self) -> int:
        """Timers not yet run nor cancelled."""
        return sum(not e.cancelled for e in self._queue)

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, running each timer at its due time."""
        until = self.now_ms + round(seconds * 1000)
        while self._queue and self._queue[0].due_ms <= until:
            entry = heapq.heappop(self._queue)
            if entry.cancelled:
                continue
            self.now_ms = max(self.now_ms, entry.due_ms)
            result = entry.callback()
            if inspect.isawaitable(result):
                await result
        # Never backwards: a test may move the clock itself while a callback was held up.
        self.now_ms = max(self.now_ms, until)

    async def close(self) -> None:
        self._queue.clear()
