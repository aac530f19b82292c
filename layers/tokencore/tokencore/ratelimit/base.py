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


class RateLimiter(ABC):
    """``hit(scope, key, limit)``: count one event, raise RateLimited when over the limit.

    Backends implement ``_increment`` only; it must be atomic under concurrency (exactly
    ``limit.count`` of any number of simultaneous hits in one window pass).
    """

    def __init__(self, clock: Clock, *, key_secret: bytes | None = None) -> None:
        self._clock = clock
        self._key_secret = key_secret

    def hit(self, scope: str, key: str, limit: RateLimit) -> None:
        """Count one event for ``key`` in ``scope``. Raises RateLimited(retry_after_seconds =
        seconds until the window ends, at least 1) when over the limit, StoreUnavailable when
        the counter cannot be read or written (fail closed: an unknown count is no allowance).
        """
        _check_scope(scope)
        _check_limit(limit)
        digest = self.key_digest(key)
        now = self._clock.now()
        window = limit.window_seconds
        window_start = int(now // window) * window
        window_end = window_start + window
        count = self._increment(scope, digest, window_start, window_end + TTL_MARGIN_SECONDS, now)
        if count > limit.count:
            raise RateLimited(math.ceil(window_end - now), scope=scope)

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
    def _increment(
        self, scope: str, key_digest: str, window_start: int, expires_at: int, now: float
    ) -> int:
        """Atomically add one to the counter of (scope, key_digest, window_start), creating it
        with ``expires_at`` if needed; return the count after the increment."""


def _check_scope(scope: str) -> None:
    if not isinstance(scope, str) or not _SCOPE_PATTERN.fullmatch(scope):
        raise ConfigError("rate-limit scope must match [a-z0-9_]{1,32}")


def _check_limit(limit: RateLimit) -> None:
    if limit.count < 1 or limit.window_seconds < 1:
        raise ConfigError("a rate limit needs a positive count and window")
