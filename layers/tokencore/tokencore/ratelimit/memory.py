"""In-memory rate limiter: one process's counters behind one lock (tests, `make dev`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tokencore.clock import Clock
from tokencore.ratelimit.base import RateLimiter, RateWindow, first_full

# Expired windows are dropped when the table grows past this, so memory stays bounded by the
# number of keys active within one window rather than growing forever.
_PRUNE_THRESHOLD = 10_000


class InMemoryRateLimiter(RateLimiter):
    def __init__(self, clock: Clock, *, key_secret: bytes | None = None) -> None:
        super().__init__(clock, key_secret=key_secret)
        self._lock = threading.Lock()
        # (scope, key digest, window start) -> [count, expires_at]
        self._counters: dict[tuple[str, str, int], list[int]] = {}

    def _increment(self, window: RateWindow) -> int:
        with self._lock:
            return self._add_one(window)

    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        with self._lock:
            refused = first_full(windows, [self._counters.get(_key(w), [0])[0] for w in windows])
            if refused is None:
                for window in windows:
                    self._add_one(window)
            return refused

    def _clear(self, scope: str, key_digest: str) -> int:
        now = self._clock.now()
        with self._lock:
            live = [
                key
                for key, (_, expires_at) in self._counters.items()
                if key[:2] == (scope, key_digest) and expires_at > now
            ]
            for key in live:
                del self._counters[key]
        return len(live)

    def _add_one(self, window: RateWindow) -> int:
        """Under the lock."""
        if len(self._counters) >= _PRUNE_THRESHOLD:
            now = self._clock.now()
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        counter = self._counters.setdefault(_key(window), [0, window.expires_at])
        counter[0] += 1
        return counter[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._counters)


def _key(window: RateWindow) -> tuple[str, str, int]:
    return (window.scope, window.key_digest, window.start)
