"""Token buckets keyed by anything hashable (client address, chat id)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens, now)
        return allowed

    def refund(self, key: Hashable, cost: float = 1.0) -> None:
        """Give back what :meth:`allow` took, for limits that charge only failures: the agent
        login charges before checking the password (so concurrent guesses cannot all slip
        through) and refunds a success."""
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(float(self.burst), tokens + cost), last)

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled completely: they carry no information."""
        full = [k for k, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # still full: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[
                    : self.max_keys // 2]:
                del self._buckets[key]
