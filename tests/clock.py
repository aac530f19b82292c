"""A clock that moves only when told to: how tests pass time (common.md: never sleep).

Test-only, so it lives here and never ships in the layer; devserver has its own
(``devserver/clock.py``: the local stack's shared, settable offset)."""

from __future__ import annotations


class ManualClock:
    """Implements ``tokencore.clock.Clock``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = float(when)
