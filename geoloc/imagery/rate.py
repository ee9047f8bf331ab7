"""A request rate shared by all threads of a run: capture workers, metadata lookups (a plain pacer,
nothing that evades limits)."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces calls to acquire() at least 1/rate seconds apart across threads; rate None or 0 = no limit."""

    def __init__(self, rate_per_s: float | None):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
