"""Per-system token buckets. Each worker process keeps its own, so with N workers a system
may reach N times the configured rate; size it per worker (README, "Production serving")."""
from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, per_second: float, burst_seconds: float = 2.0):
        self.rate = per_second
        self.capacity = max(1.0, per_second * burst_seconds)
        self._buckets: dict[str, tuple[float, float]] = {}  # system -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, system_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(system_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[system_id] = (tokens - 1.0 if allowed else tokens, now)
        return allowed
