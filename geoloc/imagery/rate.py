"""A request rate shared by all threads of a run: capture workers, metadata lookups (a plain pacer,
nothing that evades limits)."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """Spaces calls to acquire() at least 1/rate seconds apart across threads; rate None or 0 = no limit.

    Each call takes the next free slot (now, or one interval after the previous slot, whichever is
    later) and sleeps until it; a caller that comes late takes ``now``, so idle time is never saved up
    for a burst. ``clock`` and ``sleep`` are time.monotonic and time.sleep unless given."""

    def __init__(self, rate_per_s: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for this call's slot; returns the slot (a time of ``clock``)."""
        if not self.interval:
            return self._clock()
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return slot
