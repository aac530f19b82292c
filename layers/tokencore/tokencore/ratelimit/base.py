"""Fixed-window rate limits with shared state: the algorithm, independent of the store.

A window of ``W`` seconds starts at a multiple of ``W`` since the epoch, so every container
(and every backend) agrees on the current window without coordination. Each ``hit`` increments
the window's counter atomically and refuses when the count after the increment exceeds the
limit; refused hits still count, so hammering a closed window does not reopen it early.

Trade-off, accepted for its simplicity (one atomic write per check): at a window edge a client
can spend a full allowance at the end of one window and another at the start of the next, so
the worst burst is ``2 * count`` within a short span. The limits in config.py are sized with
that in mind.

Keys (usernames, IP addresses) are hashed before they reach any store: SHA-256, or
HMAC-SHA-256 when a ``key_secret`` is configured (plain SHA-256 of an IPv4 address can be
reversed by enumerating 2^32 inputs; with a secret it cannot). Counters expire with the window.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from tokencore.clock import Clock
from tokencore.config import RateLimit
from tokencore.errors import ConfigError, InvalidRequest, RateLimited

SCOPE_LOGIN_USER = "login_user"
SCOPE_LOGIN_IP = "login_ip"
SCOPE_REFRESH_USER = "refresh_user"

# How long a window's counter outlives the window: only garbage collection depends on it
# (each window has its own item), so a minute is plenty.
TTL_MARGIN_SECONDS = 60
MAX_KEY_CHARS = 8192  # bounds the hashing work; real keys are a username or an address

_SCOPE_PATTERN = re.compile(r"[a-z0-9_]{1,32}")


@dataclass(frozen=True, slots=True)
class RateWindow:
    """One key's current window under one limit: where its counter lives and when it ends.
    Holds the key's digest only, never the key."""

    scope: str
    key_digest: str
    limit: RateLimit
    start: int
    expires_at: int  # the counter's TTL: window end plus a margin
    retry_after_seconds: int

    def refusal(self) -> RateLimited:
        return RateLimited(self.retry_after_seconds, scope=self.scope)


class RateLimiter(ABC):
    """Two ways to use a limit.

    * ``hit(scope, key, limit)``: count one event, raise RateLimited when over the limit (one
      write; refused hits still count: refresh).
    * ``admit(windows)``: take one slot in every window, all or nothing, only while each is
      under its limit, else raise the first full window's RateLimited and count nothing (one
      conditional write: login). Taken BEFORE the expensive work it guards (the password
      check), so any number of parallel attempts against a window of ``L`` get at most ``L``
      slots, and a refused attempt costs the same whatever it carries.

    Backends implement the I/O; every write must be atomic under concurrency (exactly
    ``limit.count`` of any number of simultaneous hits or admissions in one window pass).
    """

    def __init__(self, clock: Clock, *, key_secret: bytes | None = None) -> None:
        self._clock = clock
        self._key_secret = key_secret

    def hit(self, scope: str, key: str, limit: RateLimit) -> None:
        """Count one event for ``key`` in ``scope``. Raises RateLimited(retry_after_seconds =
        seconds until the window ends, at least 1) when over the limit, StoreUnavailable when
        the counter cannot be read or written (fail closed: an unknown count is no allowance).
        """
        window = self.window(scope, key, limit)
        if self._increment(window) > limit.count:
            raise window.refusal()

    def window(self, scope: str, key: str, limit: RateLimit) -> RateWindow:
        """The current window of ``key`` under ``limit`` (validates; no I/O)."""
        _check_scope(scope)
        _check_limit(limit)
        digest = self.key_digest(key)
        now = self._clock.now()
        start = int(now // limit.window_seconds) * limit.window_seconds
        end = start + limit.window_seconds
        return RateWindow(
            scope=scope,
            key_digest=digest,
            limit=limit,
            start=start,
            expires_at=end + TTL_MARGIN_SECONDS,
            retry_after_seconds=max(1, math.ceil(end - now)),
        )

    def admit(self, windows: Sequence[RateWindow]) -> None:
        """Take one slot in every window, all or nothing, only while each is under its limit.
        Raises the first full window's RateLimited (and counts nothing) otherwise."""
        if windows:
            refused = self._increment_below(windows)
            if refused is not None:
                raise refused.refusal()

    def clear(self, scope: str, key: str) -> int:
        """Forget ``key``'s live windows in ``scope`` (tokenctl unlock), so its next event
        starts a fresh count; returns how many counters went. Not a check-then-act: an event
        racing it lands in the removed counter or a fresh one, and either way the key is
        unlocked. StoreUnavailable when the store fails (some counters may be gone: retry)."""
        _check_scope(scope)
        return self._clear(scope, self.key_digest(key))

    def key_digest(self, key: str) -> str:
        """The hex digest that stands for ``key`` in the store."""
        if not isinstance(key, str) or not key:
            raise InvalidRequest("rate-limit key is empty")
        if len(key) > MAX_KEY_CHARS:
            raise InvalidRequest("rate-limit key is too long")
        data = key.encode("utf-8", "surrogatepass")
        if self._key_secret is not None:
            return hmac.new(self._key_secret, data, hashlib.sha256).hexdigest()
        return hashlib.sha256(data).hexdigest()

    @abstractmethod
    def _increment(self, window: RateWindow) -> int:
        """Atomically add one to the window's counter, creating it with ``window.expires_at``
        if needed; return the count after the increment."""

    @abstractmethod
    def _clear(self, scope: str, key_digest: str) -> int:
        """Delete every unexpired counter of the key in the scope; return how many."""

    @abstractmethod
    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        """Atomically: if every window is under its limit add one to each and return None;
        otherwise change nothing and return the first full window."""


def first_full(windows: Sequence[RateWindow], counts: Sequence[int]) -> RateWindow | None:
    """The first window whose count has reached its limit (``counts`` in the same order)."""
    for window, count in zip(windows, counts, strict=True):
        if count >= window.limit.count:
            return window
    return None


def _check_scope(scope: str) -> None:
    if not isinstance(scope, str) or not _SCOPE_PATTERN.fullmatch(scope):
        raise ConfigError("rate-limit scope must match [a-z0-9_]{1,32}")


def _check_limit(limit: RateLimit) -> None:
    if limit.count < 1 or limit.window_seconds < 1:
        raise ConfigError("a rate limit needs a positive count and window")
