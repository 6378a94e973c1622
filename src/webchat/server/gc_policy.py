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
- Transcript events are untracked (``Message`` is a ``gc=False`` struct: it holds strings, a
  participant and a string map, so it can never be part of a cycle), which keeps the heap the
  collector walks independent of how long the transcripts are.

The pauses themselves are measured (:class:`PauseRecorder`, exported at ``/metrics`` as
``webchat_gc_pause_seconds``), so an operator sees whether a latency spike was the collector.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_THRESHOLDS = (700, 2, 1000)
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


def tune(thresholds: tuple[int, int, int] | None = DEFAULT_THRESHOLDS) -> None:
    """Apply the policy to this process (call it once, after the app is built)."""
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)


class PauseRecorder:
    """Cumulative histogram of collection pauses per generation, from ``gc.callbacks``.

    One per process (:func:`pauses`): the collector is the process's, not an app's."""

    def __init__(self, buckets: Sequence[float] = PAUSE_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()  # the sqlite writer thread can trigger a collection too
        self._started = 0.0
        self.counts = [[0] * (len(self.buckets) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]

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
