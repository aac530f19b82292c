"""Time is injected: production uses the wall clock; tests pass their own clock
(tests/clock.py ``ManualClock``) and never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


SYSTEM_CLOCK: Clock = SystemClock()
