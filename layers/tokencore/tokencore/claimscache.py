"""A bounded cache of verified access-token claims, keyed on the exact token string.

A warm authorizer sees the same access token many times; verifying it again proves nothing new
(a given string either verifies with a given key or not). So only the verification is skipped
on a hit: the fingerprint binding, the route policy and the session check still run on every
call. An entry is served only while the token is unexpired (without the leeway), younger than
``max_age_seconds``, still vouched for by the key ring under its ``kid``, and not "from the
future"; only verified tokens are stored, least recently used evicted first. docs/authorizer.md
("The claims cache") gives each bound and why.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from tokencore.errors import TokenCoreError
from tokencore.jose.algorithms import JwsKey
from tokencore.tokens.claims import AccessClaims
from tokencore.tokens.verify import KeyLookup

DEFAULT_MAX_ENTRIES: Final = 1024
DEFAULT_MAX_AGE_SECONDS: Final = 60


@dataclass(slots=True)  # not frozen: built on every first sight, and never handed out
class _Entry:
    claims: AccessClaims
    key: JwsKey
    stored_at: float
    expires_at: float


class ClaimsCache:
    """LRU of verified claims by token string. Thread-safe (the local stack serves requests in
    threads; a Lambda container runs one request at a time, so the lock is never contended)."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    ) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must not be negative")
        if max_age_seconds < 0:
            raise ValueError("max_age_seconds must not be negative")
        self.max_entries = max_entries
        self.max_age_seconds = float(max_age_seconds)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, token: str, keys: KeyLookup, now: float) -> AccessClaims | None:
        """The claims verified earlier for exactly this string, if they may still be used."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                self.misses += 1
                return None
            if not entry.stored_at <= now < entry.expires_at:
                del self._entries[token]
                self.misses += 1
                return None
            self._entries.move_to_end(token)
        # Outside the lock: the key ring may refetch (its own lock, a network call).
        if not _still_served(entry.key, keys):
            with self._lock:
                if self._entries.get(token) is entry:
                    del self._entries[token]
                self.misses += 1
            return None
        self.hits += 1
        return entry.claims

    def store(self, token: str, claims: AccessClaims, key: JwsKey, now: float) -> None:
        """Remember claims that ``verify`` has just accepted for ``token`` with ``key``."""
        if self.max_entries == 0:
            return
        expires_at = min(float(claims.expires_at), now + self.max_age_seconds)
        if not now < expires_at:
            return
        entry = _Entry(claims, key, now, expires_at)
        with self._lock:
            entries = self._entries
            if token in entries:
                entries.move_to_end(token)
            entries[token] = entry
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _still_served(key: JwsKey, keys: KeyLookup) -> bool:
    """True when the ring still verifies this kid with this very key (or an equal one)."""
    try:
        current = keys.get(key.kid)
    except TokenCoreError:
        return False  # gone, or the ring cannot tell: let verify give its own answer
    return current is key or current == key


__all__ = ["DEFAULT_MAX_AGE_SECONDS", "DEFAULT_MAX_ENTRIES", "ClaimsCache"]
