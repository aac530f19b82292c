"""The verifier's key cache: which key verifies a given kid, now.

Rules, in the order they are applied by :meth:`KeyRing.get`:

1. A kid we could never have loaded (``jose.codec.is_valid_kid``) is unknown at once, no refetch.
2. A cached key is served until the cache is ``cache_ttl_seconds`` old. The TTL is the bound
   on emergency revocation: a key removed from the source stops verifying within it.
3. An unknown kid, or an expired cache, triggers a refetch of the whole key list, which then
   replaces the cache (so removed keys disappear). Refetches caused by unknown kids run at
   most once per ``refetch_min_interval_seconds`` per container, so a flood of random kids
   causes no refetch storm; after that the kid is simply unknown (UnknownKey). While a
   failed refetch is being waited out, the answer is KeyUnavailable, not UnknownKey: we do
   not know, and a client should retry rather than drop its token.
4. Refresh ahead (``refresh_ahead_seconds`` > 0): once a cached key is served within that many
   seconds of the cache's expiry, one background refetch starts (``background`` runs it: a
   daemon thread by default) while requests keep being answered from the snapshot, which the
   refetch then replaces. A busy container thus never waits for its keys; the expiry is still
   counted from the fetch that loaded them, so the revocation bound is unchanged. A failed
   background refetch changes nothing (the rate limit applies to the next attempt); at expiry
   rule 3 applies as before.
5. Expired cache and failing source: fail closed with KeyUnavailable. Keys are never served
   stale. Serving stale keys would stretch the revocation bound exactly when the source is in
   trouble (perhaps mid-incident), and the authorizer denies on a fault anyway; the price is
   that a source outage longer than the TTL denies every request until it recovers.

Lookups of cached keys take no lock: the cache is one immutable snapshot swapped atomically.
A refetch holds the lock, so concurrent misses cause one source call, not one each.

``StaticKeySource`` and ``JwksDocumentSource`` are pure sources (no boto3): fixed keys, or the
PUBLIC_JWKS setting (JSON text or a file path).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from tokencore.clock import Clock
from tokencore.errors import ConfigError, InvalidKeyMaterial, KeyUnavailable, UnknownKey
from tokencore.jose.codec import is_valid_kid
from tokencore.keys.jwk import parse_json_document, parse_jwks
from tokencore.keys.jwks import sort_by_status
from tokencore.keys.model import KeySource, VerificationKey


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keys: MappingProxyType[str, VerificationKey]
    expires_at: float  # -inf: nothing loaded yet
    refresh_at: float = float("inf")  # from then on, a served key starts a background refetch


def in_a_thread(job: Callable[[], None]) -> None:
    """The default runner of background refetches: a daemon thread (on Lambda it runs while
    invocations run, and is frozen with the container between them)."""
    threading.Thread(target=job, name="tokencore-key-refresh", daemon=True).start()


def _index(keys: Iterable[VerificationKey], what: str) -> MappingProxyType[str, VerificationKey]:
    indexed: dict[str, VerificationKey] = {}
    for key in keys:
        if not isinstance(key, VerificationKey):
            raise InvalidKeyMaterial(f"{what} returned something that is not a key")
        if key.kid in indexed:
            raise InvalidKeyMaterial(f"{what} has the kid {key.kid!r} more than once")
        indexed[key.kid] = key
    return MappingProxyType(indexed)


def _fault(what: str, cause: KeyUnavailable, retry_after: float) -> KeyUnavailable:
    """A fault of the same class as ``cause`` (a bad document stays InvalidKeyMaterial), with
    its message, which the error tree guarantees is free of key material, and the seconds until
    this container will try the source again (the client's Retry-After)."""
    error = InvalidKeyMaterial if isinstance(cause, InvalidKeyMaterial) else KeyUnavailable
    fault = error(f"{what}: {cause.message}")
    fault.retry_after_seconds = max(1, math.ceil(retry_after))
    return fault


class KeyRing:
    """Thread-safe, TTL-bounded cache of verification keys in front of a KeySource."""

    def __init__(
        self,
        source: KeySource,
        clock: Clock,
        cache_ttl_seconds: int,
        refetch_min_interval_seconds: int,
        initial: Sequence[VerificationKey] | None = None,
        *,
        refresh_ahead_seconds: float = 0.0,
        background: Callable[[Callable[[], None]], None] = in_a_thread,
    ) -> None:
        if cache_ttl_seconds < 1:
            raise ConfigError("JWKS_CACHE_TTL_SECONDS must be at least 1")
        if refetch_min_interval_seconds < 0:
            raise ConfigError("JWKS_REFETCH_MIN_INTERVAL_SECONDS must be at least 0")
        self._source = source
        self._clock = clock
        self._ttl = float(cache_ttl_seconds)
        self._min_interval = float(refetch_min_interval_seconds)
        # Never more than the TTL: a refetch ahead of expiry, not instead of a cache.
        self._ahead = min(max(0.0, float(refresh_ahead_seconds)), self._ttl)
        self._background = background
        # After a failed background attempt, the next one waits this long (within the window).
        self._retry_interval = min(self._min_interval, self._ahead / 2)
        self._refreshing = False  # a background refetch is queued or running
        self._lock = threading.Lock()
        self._last_attempt_at: float | None = None
        self._last_error: KeyUnavailable | None = None
        if initial is None:
            self._snapshot = _Snapshot(MappingProxyType({}), float("-inf"))
        else:
            # Keys from the environment or a file: used, with no source call, until they
            # expire or an unknown kid arrives.
            keys = _index(initial, "initial keys")
            self._snapshot = self._fresh(keys, clock.now())

    def get(self, kid: str) -> VerificationKey:
        """The key for ``kid``. Raises UnknownKey, or KeyUnavailable when we cannot tell."""
        if not is_valid_kid(kid):
            raise UnknownKey("kid is not acceptable")
        now = self._clock.now()
        snapshot = self._snapshot
        if now < snapshot.expires_at:
            key = snapshot.keys.get(kid)
            if key is not None:
                if now >= snapshot.refresh_at:
                    self._refresh_in_background(snapshot, now)
                return key
        with self._lock:
            snapshot = self._current(now, refetch_if_fresh=kid not in self._snapshot.keys)
            key = snapshot.keys.get(kid)
            if key is None:
                raise UnknownKey("no key has this kid")
            return key

    def keys(self) -> list[VerificationKey]:
        """Every key that verifies now (active, next, retired), refetching if expired."""
        now = self._clock.now()
        snapshot = self._snapshot
        if not now < snapshot.expires_at:
            with self._lock:
                snapshot = self._current(now, refetch_if_fresh=False)
        elif now >= snapshot.refresh_at:
            self._refresh_in_background(snapshot, now)
        return sort_by_status(snapshot.keys.values())

    def _current(self, now: float, *, refetch_if_fresh: bool) -> _Snapshot:
        """The snapshot to answer from, refetching when the rules allow. Hold the lock."""
        snapshot = self._snapshot
        fresh = now < snapshot.expires_at
        if fresh and not refetch_if_fresh:
            return snapshot  # another thread refetched while we waited for the lock
        rate_limited = (
            self._last_attempt_at is not None and now - self._last_attempt_at < self._min_interval
        )
        # An expired cache after a successful fetch refetches at once (that happens at most
        # once per TTL); after a failure, and for unknown kids, the rate limit applies.
        last_error = self._last_error
        if rate_limited and (fresh or last_error is not None):
            if last_error is not None:
                wait = self._min_interval - (now - (self._last_attempt_at or now))
                raise _fault("verification keys are unavailable", last_error, wait) from last_error
            return snapshot
        self._last_attempt_at = now
        try:
            keys = _index(self._source.load_verification_keys(), "key source")
        except KeyUnavailable as exc:
            self._last_error = exc
            wait = self._min_interval  # no new attempt before then: Retry-After says so
            if fresh:  # the cached keys are still within their TTL; only this kid is unknown
                raise _fault("verification keys could not be refreshed", exc, wait) from exc
            self._snapshot = _Snapshot(MappingProxyType({}), float("-inf"))  # fail closed
            raise _fault("verification keys could not be loaded", exc, wait) from exc
        self._last_error = None
        self._snapshot = self._fresh(keys, now)
        return self._snapshot

    def _fresh(self, keys: MappingProxyType[str, VerificationKey], now: float) -> _Snapshot:
        refresh_at = now + self._ttl - self._ahead if self._ahead else float("inf")
        return _Snapshot(keys, now + self._ttl, refresh_at)

    def _refresh_in_background(self, seen: _Snapshot, now: float) -> None:
        """Queue one refetch of ``seen``'s keys, unless one is queued or running already or
        the last attempt was too recent. Never blocks: the flag is read without the lock (two
        racing requests may both queue one; the second finds the snapshot replaced)."""
        if self._refreshing or self._snapshot is not seen:
            return
        last = self._last_attempt_at
        if last is not None and now - last < self._retry_interval:
            return
        self._refreshing = True
        try:
            self._background(lambda: self._refresh_ahead(seen))
        except Exception:  # noqa: BLE001 - no runner (no thread left): rule 3 covers expiry
            self._refreshing = False

    def _refresh_ahead(self, seen: _Snapshot) -> None:
        """The background refetch: replaces the snapshot on success, changes nothing on a
        failure (the request path then refetches at expiry, rate limited, as rule 3 says)."""
        try:
            with self._lock:
                now = self._clock.now()
                if self._snapshot is not seen or not now < seen.expires_at:
                    return  # someone refetched meanwhile, or it expired: the sync path owns it
                last = self._last_attempt_at
                if last is not None and now - last < self._retry_interval:
                    return
                self._last_attempt_at = now
                try:
                    keys = _index(self._source.load_verification_keys(), "key source")
                except KeyUnavailable as exc:
                    self._last_error = exc
                    return
                self._last_error = None
                self._snapshot = self._fresh(keys, now)
        finally:
            self._refreshing = False


class StaticKeySource:
    """A fixed list of keys (tests, or keys built at start-up)."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys = tuple(_index(keys, "static key source").values())

    def load_verification_keys(self) -> list[VerificationKey]:
        return list(self._keys)


class JwksDocumentSource:
    """Public keys from PUBLIC_JWKS: a JWKS as JSON text (starts with ``{``) or a file path.

    JSON text is parsed once (it cannot change); a file is read again on every load, so a
    refetch sees a replaced file. Read failures are KeyUnavailable; a bad document is
    InvalidKeyMaterial. Messages never repeat the setting's value.
    """

    def __init__(self, json_text_or_path: str) -> None:
        value = json_text_or_path.strip()
        if not value:
            raise ConfigError("PUBLIC_JWKS is empty")
        self._source: str | Path = value if value.startswith("{") else Path(value)
        self._parsed: tuple[VerificationKey, ...] | None = None

    def load_verification_keys(self) -> list[VerificationKey]:
        if isinstance(self._source, Path):
            try:
                text = self._source.read_bytes()
            except OSError as exc:
                raise KeyUnavailable("the PUBLIC_JWKS file could not be read") from exc
            return self._parse(text)
        if self._parsed is None:
            self._parsed = tuple(self._parse(self._source))
        return list(self._parsed)

    @staticmethod
    def _parse(text: str | bytes) -> list[VerificationKey]:
        return parse_jwks(parse_json_document(text, "PUBLIC_JWKS"))


if TYPE_CHECKING:  # mypy checks that these classes implement the protocol
    _STATIC: type[KeySource] = StaticKeySource
    _JWKS: type[KeySource] = JwksDocumentSource
