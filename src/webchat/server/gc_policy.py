"""How the server process uses Python's cyclic garbage collector, and what it costs.

A chat server's heap is mostly long-lived: every open chat keeps its transcript, its Bayeux
session, a WebSocket and the coroutines that serve it — some 160 tracked objects a chat, 1.6
million at 10,000 chats. With CPython's default thresholds (700, 10, 10) a steady 2,000
messages/s promotes enough short-lived-but-not-instant objects (a held ``/meta/connect``'s
future and timer live until the chat's next message) for a full collection every few
seconds, each walking the whole heap: measured with ``benchmarks/cluster_chat.py`` at 10,000
chats, pauses of 0.4 to 1.5 s several times a minute, which *are* the delivery p99, and a
large share of the process's CPU.

The policy, applied once when ``webchat serve`` starts (:func:`tune`):

- :func:`gc.freeze` after start-up: what the imports and the app built is permanent, so no
  collection walks it again.
- ``DEFAULT_THRESHOLDS`` (700, 2, 1000): a rarer full collection (the oldest generation
  considered 100 times more rarely than Python does) and a smaller middle one. A middle
  collection walks what survived the young collections since the last one; after 10 of
  them (Python's) that was the 5-25 ms pause behind the delivery p99 at 10,000 chats, after
  2 it is a fifth. Measured with ``benchmarks/cluster_chat.py`` (SQLite, 10,000 chats, 1,000
  messages/s, interleaved): p99 18.9 / 21.1 ms -> 15.3 / 15.4 ms, max 36 / 47 -> 29 / 32 ms,
  for 2% more CPU (0.653 -> 0.665 cores). Larger young thresholds do not
  help here: a commit replaces a chat's cached copy (copy-on-write), so the young objects that
  survive grow while the allocation count (allocations minus deallocations, old ones
  included) stands still; with a threshold of 10,000 a young collection found 117,000
  objects and paused the loop for 50-130 ms. Reference counting still frees everything
  that is not in a cycle at once; only cyclic garbage waits longer, and the server's own
  cycles are broken where they were made (a timer's handle and callback,
  :class:`~webchat.server.chat.clock.AsyncioScheduler`).
  Settable with ``--gc-thresholds`` (``default`` keeps Python's).
- Young collections on a clock (:class:`Pacer`, ``--gc-pace``, every 0.1 s by default):
  what a young collection walks is what is alive in the young generation, above all the
  objects of the requests in flight, so collecting every 700 allocations walked them over
  and over (at 10,000 chats and 1,000 messages/s, 133 young and 44 middle collections a
  second, 0.28 s of every second); paced, 0.026-0.045 s, each pause what a beat
  accumulated. The young threshold is then only a backstop for bursts.
- Transcript events are untracked (``Message`` is a ``gc=False`` struct: it holds strings, a
  participant and a string map, so it can never be part of a cycle), which keeps the heap the
  collector walks independent of how long the transcripts are.

The pauses themselves are measured (:class:`PauseRecorder`, exported at ``/metrics`` as
``webchat_gc_pause_seconds``), so an operator sees whether a latency spike was the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (700, 2, 1000)
DEFAULT_PACE_S = 0.1
"""A young collection this often (``--gc-pace``; 0: by allocation counts alone)."""
PACED_BACKSTOP = 25_000
"""The young threshold while collections are paced: only a burst of allocations between two
beats (a restart loading every open chat) reaches it, and then Python's own rules run."""
MIDDLE_EVERY = 2
"""Every so many paced collections also takes the middle generation (as threshold 2 did)."""
LONG_PAUSE_S = 0.05
"""A collection pausing the process this long is also logged (a warning, from the event loop
the recorder reports on), with its generation and what it collected: a delivery spike an
operator sees in the log names its cause, as ``benchmarks/cluster_chat.py`` reads it from a
server's output."""
MAX_UNREPORTED = 100
"""Long pauses kept for the loop to log at most (a loop too busy to run its callbacks)."""
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def parse_thresholds(value: str) -> tuple[int, int, int] | None:
    """``"700,2,1000"`` -> the three thresholds; ``"default"`` -> None (Python's own)."""
    if value.strip().lower() == "default":
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[0]) < 1:
        raise ValueError(f"expected three non-negative integers such as 700,2,1000 "
                         f"(the first at least 1) or 'default', not {value!r}")
    first, second, third = (int(p) for p in parts)
    return first, second, third


def tune(thresholds: tuple[int, int, int] | None = DEFAULT_THRESHOLDS,
         pace_s: float = 0.0) -> None:
    """Apply the policy to this process (call it once, after the app is built). With
    ``pace_s`` the young threshold becomes a backstop (:data:`PACED_BACKSTOP`, or the given
    one if larger): :class:`Pacer` collects on the clock."""
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        first, *rest = thresholds
        gc.set_threshold(max(first, PACED_BACKSTOP) if pace_s > 0 else first, *rest)
    elif pace_s > 0:
        gc.set_threshold(PACED_BACKSTOP, *gc.get_threshold()[1:])


class Pacer:
    """Young collections on a clock instead of on allocation counts.

    What a young collection costs is the objects alive in the young generation when it runs,
    each walked once, and at 700 allocations a busy server collects over a hundred times a
    second: the objects of the requests in flight (a message's coroutines awaiting its
    commit, some fifteen of them) are walked again and again. ``benchmarks/cluster_chat.py``,
    10,000 chats at 1,000 messages/s: 0.28 s of every second in the collector (133 young
    and 44 middle collections a second); paced at 0.1 s, 0.045 s. On a clock the in-flight
    objects are walked once a beat, what lives longer (a held connect's timer, a socket's
    next read) twice, as before: the work follows the messages, not the allocations, and a
    pause is what one beat accumulated.

    Every :data:`MIDDLE_EVERY`-th beat takes the middle generation too, and a full
    collection follows Python's own rule, which it applies only to collections it starts
    itself: more than ``threshold[2]`` middle collections since the last full one, and the
    objects promoted since then a quarter of those the last one left (counted here: what
    a middle collection had minus what it freed). The allocation threshold stays, as a
    backstop (:func:`tune`)."""

    def __init__(self, pace_s: float = DEFAULT_PACE_S) -> None:
        if pace_s <= 0:
            raise ValueError("a pace is a positive number of seconds")
        self.pace_s = pace_s
        self._beats = 0
        self._promoted = 0
        """Objects moved to the oldest generation since its last collection."""
        self._long_lived: int | None = None
        """What the last full collection left in the oldest generation (None: to count)."""
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Beat on the running loop until :meth:`stop`."""
        gc.callbacks.append(self._collected)
        self._timer = asyncio.get_running_loop().call_later(self.pace_s, self._beat)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)

    def _beat(self) -> None:
        self._beats += 1
        if self._beats % MIDDLE_EVERY:
            gc.collect(0)
        elif self._full_due():
            gc.collect(2)
        else:
            young = len(gc.get_objects(0)) + len(gc.get_objects(1))
            self._promoted += max(0, young - gc.collect(1))
        self._timer = asyncio.get_running_loop().call_later(self.pace_s, self._beat)

    def _full_due(self) -> bool:
        if gc.get_count()[2] <= gc.get_threshold()[2]:
            return False
        if self._long_lived is None:
            self._long_lived = len(gc.get_objects(2))
        return self._promoted >= self._long_lived // 4

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        """Any full collection (a beat's, the backstop's, a ``gc.collect()``) starts the
        count of promotions again."""
        if phase == "stop" and info.get("generation") == 2:
            self._promoted = 0
            self._long_lived = None


class PauseRecorder:
    """Cumulative histogram of collection pauses per generation, from ``gc.callbacks``.

    One per process (:func:`pauses`): the collector is the process's, not an app's."""

    def __init__(self, buckets: Sequence[float] = PAUSE_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()  # the sqlite writer thread can trigger a collection too
        self._started = 0.0
        self.counts = [[0] * (len(self.buckets) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self._long: list[tuple[float, int, int]] = []
        """Long pauses (seconds, generation, objects freed) not yet logged."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        generation = min(int(info.get("generation", 0)), 2)
        slot = next((i for i, b in enumerate(self.buckets) if elapsed <= b), len(self.buckets))
        with self._lock:
            self.counts[generation][slot] += 1
            self.sums[generation] += elapsed
            loop = self._loop if elapsed >= LONG_PAUSE_S else None
            if loop is not None and len(self._long) < MAX_UNREPORTED:
                self._long.append((elapsed, generation, int(info.get("collected", 0))))
        if loop is not None and not sys.is_finalizing():
            # Logged from the loop, not here: inside a collection (which may have started in
            # the middle of another log record, or in the store's writer thread) no I/O.
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._report)

    def report_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Log each pause of :data:`LONG_PAUSE_S` or more as a warning, on ``loop``."""
        self._loop = loop

    def _report(self) -> None:
        with self._lock:
            long, self._long = self._long, []
        for elapsed, generation, collected in long:
            log.warning("garbage collection paused this process for %.0f ms (generation %d, "
                        "%d objects freed)", elapsed * 1000, generation, collected)

    def snapshot(self, generation: int) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` buckets, ``+Inf`` last, and the sum of seconds."""
        with self._lock:
            counts, total = list(self.counts[generation]), self.sums[generation]
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out, total


_recorder: PauseRecorder | None = None


def pauses() -> PauseRecorder:
    """The process's recorder, installed in ``gc.callbacks`` on first use."""
    global _recorder
    if _recorder is None:
        _recorder = PauseRecorder()
        gc.callbacks.append(_recorder)
    return _recorder
