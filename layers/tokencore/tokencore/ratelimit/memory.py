"""In-memory rate limiter: one process's counters behind one lock (tests, `make dev`)."""

from __future__ import annotations

import threading

from tokencore.clock import Clock
from tokencore.ratelimit.base import RateLimiter

# Expired windows are dropped when the table grows past this, so memory stays bounded by the
# number of keys active within one window rather than growing forever.
_PRUNE_THRESHOLD = 10_000


class InMemoryRateLimiter(RateLimiter):
    def __init__(self, clock: Clock, *, key_secret: bytes | None = None) -> None:
        super().__init__(clock, key_secret=key_secret)
        self._lock = threading.Lock()
        # (scope, key digest, window start) -> [count, expires_at]
        self._counters: dict[tuple[str, str, int], list[int]] = {}

    def _increment(
        self, scope: str, key_digest: str, window_start: int, expires_at: int, now: float
    ) -> int:
        with self._lock:
            if len(self._counters) >= _PRUNE_THRESHOLD:
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
            counter = self._counters.setdefault((scope, key_digest, window_start), [0, expires_at])
            counter[0] += 1
            return counter[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._counters)
