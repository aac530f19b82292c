"""The revocation list: every session revoked within the last access-token lifetime, which each
authorizer container fetches every REVOCATION_PROPAGATION_SECONDS so a revoked session's tokens
are denied on every route with no per-request database read.

Layout: one item per minute of revocations (``BUCKET_SECONDS``) on the single table, pk
``REVOKED#<bucket start>``, sk ``LIST``, one attribute ``s_<session id>`` = revoked at per
session, one attribute ``u_<user id>`` = not before (epoch seconds) per user whose every
session ended (revoke-all, a disabled user, a password change), and the TTL attribute set to
when the bucket no longer matters (its end plus the access-token TTL plus the leeway). The
session store writes a session's entry in the same transaction as the revocation itself
(sessions/dynamodb.py), the user store a user's entry in the same transaction as the user's
revoke-all marker, disabled flag or new password (users/dynamodb.py), so an entry exists
exactly when the write it records landed. Time buckets keep each item small: a write's cost
grows with the item's size.

A user entry denies the user's tokens issued before its second: ``iat < floor(not_before)``.
Tokens carry whole-second ``iat``, so a token of the revoke-all's own second may predate it or
follow it (a login a moment later); it is not denied by the user entry, or that login would be
locked out for the whole window. The per-session entries that the revoke-all's index pass
writes cover that second's older sessions; one the eventually consistent index missed AND
created in that very second is refused at its refresh (the marker) and on session-checked
routes, and its token expires within ACCESS_TOKEN_TTL_SECONDS (docs/security.md).

The reader (:class:`RevocationList`, no boto3: ``tokencore.awshttp``) keeps a copy of the
buckets in the window. Rules, applied by :meth:`RevocationList.standing`:

1. Copy younger than ``propagation`` seconds: answer from it.
2. Older: answer from it, and start one background refresh (at most one at a time). A request
   that comes while that refresh is in flight waits for it (at most ``REFRESH_WAIT_SECONDS``),
   so only the request that started it answers from the old copy: a revocation counts on every
   route within ``propagation`` plus one request per container. (On Lambda a container runs one
   request at a time and a background thread only while a request runs, so the request after
   the one that started the refresh usually waits out the rest of its fetch: a few
   milliseconds, once per ``propagation``.) A refresh that failed leaves the copy trusted, and
   starts again ``propagation`` after the failure.
3. Older than ``stale_after`` (3 times propagation): the copy is no longer trusted. One synchronous
   refresh is tried (at most once per ``propagation`` after a failure); if it fails the answer
   is STALE and the caller checks the session in the store for that request (fail closed: a
   store that cannot answer denies).

Rule 1 is every request's path: one clock read and comparison, a set and a dict lookup, no
lock and no allocation (bench/revocations.py measures it).

A bucket that ended more than ``SEAL_SLACK_SECONDS`` before a successful fetch began can get no
more writes, so it is kept and not read again: in steady state a refresh reads one or two items.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from tokencore.clock import Clock
from tokencore.errors import ConfigError

BUCKET_SECONDS: Final = 60
SEAL_SLACK_SECONDS: Final = 10  # writers' clocks and in-flight transactions
STALE_FACTOR: Final = 3
# How long a request waits for a refresh already in flight; a slower fetch lets it answer from
# the copy it has (still within the stale bound). The fetch's own timeout is awshttp's.
REFRESH_WAIT_SECONDS: Final = 2.0
# A write carrying a list entry meets other revocations on the minute's bucket item: a
# TransactionConflict there is retried this many times in all, after a short random pause.
CONFLICT_ATTEMPTS: Final = 8


def pause_after_conflict(attempt: int) -> None:
    """Jitter before retrying a transaction that met another on a bucket item (attempt 0:
    up to 10 ms, growing by 10 ms per attempt), so the writers that met do not meet again."""
    time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311 - jitter, not a secret


REVOKED_PREFIX: Final = "REVOKED#"
LIST_SORT: Final = "LIST"
SESSION_ENTRY_PREFIX: Final = "s_"
USER_ENTRY_PREFIX: Final = "u_"
_NO_USER_ENTRY: Final = -1  # below every iat: nothing is denied


class Standing(StrEnum):
    LISTED = "listed"  # the session is listed
    USER_LISTED = "user_listed"  # the user is listed with a not-before after the token's iat
    NOT_LISTED = "not_listed"
    STALE = "stale"  # the copy cannot be trusted: check the session in the store


# Module constants: an enum member read through its class costs a descriptor call per request.
_LISTED: Final = Standing.LISTED
_USER_LISTED: Final = Standing.USER_LISTED
_NOT_LISTED: Final = Standing.NOT_LISTED
NOT_LISTED: Final = _NOT_LISTED  # for the caller's own fast test


def bucket_start(at: float) -> int:
    return int(at // BUCKET_SECONDS) * BUCKET_SECONDS


def bucket_key(start: int) -> dict[str, Any]:
    return {"pk": {"S": f"{REVOKED_PREFIX}{start}"}, "sk": {"S": LIST_SORT}}


def window_seconds(access_token_ttl_seconds: int, leeway_seconds: int) -> int:
    """How long a revocation matters: a token minted just before it lives this long."""
    return access_token_ttl_seconds + leeway_seconds


def entry_update(
    table_name: str, session_id: str, revoked_at: float, window: int
) -> dict[str, Any]:
    """The TransactWriteItems ``Update`` that lists ``session_id`` (revoked at ``revoked_at``)
    in its bucket; the bucket item is created by the first entry."""
    return _entry(table_name, SESSION_ENTRY_PREFIX + session_id, revoked_at, window)


def user_entry_update(
    table_name: str, user_id: str, not_before: float, window: int
) -> dict[str, Any]:
    """The TransactWriteItems ``Update`` that lists ``user_id``: the user's tokens issued
    before ``floor(not_before)`` are denied (the module's docstring says why floor)."""
    return _entry(table_name, USER_ENTRY_PREFIX + user_id, not_before, window)


def _entry(table_name: str, attribute: str, at: float, window: int) -> dict[str, Any]:
    start = bucket_start(at)
    # A session entry's value is informative (any entry lists the session); a user entry's is
    # the not-before second.
    value = math.floor(at) if attribute.startswith(USER_ENTRY_PREFIX) else math.ceil(at)
    return {
        "Update": {
            "TableName": table_name,
            "Key": bucket_key(start),
            "UpdateExpression": "SET #entry = :at, #expires_at = :expires_at",
            "ExpressionAttributeNames": {"#entry": attribute, "#expires_at": "expires_at"},
            "ExpressionAttributeValues": {
                ":at": {"N": str(value)},
                ":expires_at": {"N": str(start + BUCKET_SECONDS + window)},
            },
        }
    }


class ItemFetcher(Protocol):
    """Reads bucket items by key; raises on any failure, or when any key went unanswered."""

    def __call__(self, keys: list[dict[str, Any]]) -> list[Mapping[str, Any]]: ...


def entries_of(item: Mapping[str, Any]) -> frozenset[str]:
    """The session ids a bucket item lists."""
    return frozenset(
        name[len(SESSION_ENTRY_PREFIX) :] for name in item if name.startswith(SESSION_ENTRY_PREFIX)
    )


def user_entries_of(item: Mapping[str, Any]) -> dict[str, int]:
    """The user ids a bucket item lists, each with its not-before second. A malformed value
    raises (the fetch fails and the stale bound decides), never drops the entry."""
    return {
        name[len(USER_ENTRY_PREFIX) :]: int(value["N"])
        for name, value in item.items()
        if name.startswith(USER_ENTRY_PREFIX)
    }


@dataclass(frozen=True, slots=True)
class _Bucket:
    sessions: frozenset[str]
    users: Mapping[str, int]  # user id -> not-before second


_EMPTY_BUCKET: Final = _Bucket(frozenset(), {})


def start_of(item: Mapping[str, Any]) -> int:
    return int(str(item["pk"]["S"])[len(REVOKED_PREFIX) :])


def in_a_thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="tokencore-revocation-refresh", daemon=True).start()


@dataclass(frozen=True, slots=True)
class _Copy:
    buckets: Mapping[int, _Bucket]  # bucket start -> its entries
    sealed: frozenset[int]  # buckets that can change no more
    fetched_at: float  # when the fetch that made it began; -inf: none yet
    refresh_at: float  # fetched_at + propagation: until then, rule 1
    sessions: frozenset[str]  # every listed session
    users: Mapping[str, int]  # every listed user, the latest not-before of the window


_EMPTY: Final = _Copy({}, frozenset(), float("-inf"), float("-inf"), frozenset(), {})


class RevocationList:
    """One per authorizer container. Thread-safe. Rule 1 never waits; past the bound, a request
    waits for a refresh another request started (rule 2)."""

    def __init__(
        self,
        fetch: ItemFetcher,
        clock: Clock,
        *,
        propagation_seconds: int,
        window: int,
        background: Callable[[Callable[[], None]], None] = in_a_thread,
    ) -> None:
        if propagation_seconds < 1:
            raise ConfigError("REVOCATION_PROPAGATION_SECONDS must be at least 1")
        self._fetch = fetch
        self._clock = clock
        self._now = clock.now  # bound once: the fast path reads it on every request
        self.propagation = float(propagation_seconds)
        self.stale_after = float(STALE_FACTOR * propagation_seconds)
        self._window = window
        self.background = background  # public: tests run it inline
        self._copy = _EMPTY
        self._lock = threading.Lock()
        self._lock_starting = threading.Lock()  # one refresh started at a time
        self._refreshing = False
        self._landed = threading.Event()  # set while no refresh is in flight
        self._landed.set()
        self._last_failure_at = float("-inf")
        self.fetches = 0  # items read, for the capacity figures
        self.failures = 0

    def standing(self, session_id: str, user_id: str, issued_at: int) -> Standing:
        """Whether a token (its session, its user, its whole-second ``iat``) is listed."""
        copy = self._copy
        if self._now() >= copy.refresh_at:
            return self._standing_when_due(session_id, user_id, issued_at)
        if session_id in copy.sessions:
            return _LISTED
        if issued_at < copy.users.get(user_id, _NO_USER_ENTRY):
            return _USER_LISTED
        return _NOT_LISTED

    def _standing_when_due(self, session_id: str, user_id: str, issued_at: int) -> Standing:
        """Rules 2 and 3: the copy is due for a refresh."""
        now = self._clock.now()
        copy = self._copy
        if now - copy.fetched_at >= self.stale_after:
            copy = self._refresh_now(now)
            if now - copy.fetched_at >= self.stale_after:
                return Standing.STALE
        elif self._refreshing:
            # A refresh an earlier request started is in flight: wait for it (rule 2).
            self._landed.wait(REFRESH_WAIT_SECONDS)
            copy = self._copy
        elif now - self._last_failure_at >= self.propagation:
            self._refresh_in_background()
        if session_id in copy.sessions:
            return Standing.LISTED
        if issued_at < copy.users.get(user_id, _NO_USER_ENTRY):
            return Standing.USER_LISTED
        return Standing.NOT_LISTED

    def _refresh_now(self, now: float) -> _Copy:
        with self._lock:
            copy = self._copy
            if now - copy.fetched_at < self.stale_after:
                return copy  # another thread refreshed it while we waited
            if now - self._last_failure_at < self.propagation:
                return copy  # failed a moment ago: do not hammer the table
            return self._refresh(now)

    def _refresh_in_background(self) -> None:
        with self._lock_starting:
            if self._refreshing:
                return
            self._refreshing = True
            self._landed.clear()
        try:
            self.background(self._refresh_ahead)
        except Exception:  # noqa: BLE001 - no thread left: rule 3 covers it at the stale bound
            self._refreshing = False
            self._landed.set()

    def _refresh_ahead(self) -> None:
        try:
            with self._lock:
                now = self._clock.now()
                if now - self._copy.fetched_at >= self.propagation and (
                    now - self._last_failure_at >= self.propagation
                ):
                    self._refresh(now)
        finally:
            self._refreshing = False
            self._landed.set()

    def _refresh(self, now: float) -> _Copy:
        """Fetch the unsealed buckets of the window. Hold the lock. A failure keeps the copy."""
        old = self._copy
        first = bucket_start(now - self._window)
        starts = range(first, bucket_start(now) + BUCKET_SECONDS, BUCKET_SECONDS)
        wanted = [start for start in starts if start not in old.sealed]
        try:
            items = self._fetch([bucket_key(start) for start in wanted])
            found = {
                start_of(item): _Bucket(entries_of(item), user_entries_of(item)) for item in items
            }
            found = {start: found.get(start, _EMPTY_BUCKET) for start in wanted}
        except Exception:  # noqa: BLE001 - any failure: keep the copy, the stale bound decides
            self.failures += 1
            self._last_failure_at = now
            return old
        self.fetches += len(wanted)
        buckets = {start: old.buckets.get(start, _EMPTY_BUCKET) for start in starts}
        buckets.update(found)
        sealed = frozenset(
            start for start in starts if start + BUCKET_SECONDS + SEAL_SLACK_SECONDS <= now
        )
        sessions = frozenset().union(*(bucket.sessions for bucket in buckets.values()))
        users: dict[str, int] = {}
        for bucket in buckets.values():
            for user_id, not_before in bucket.users.items():
                users[user_id] = max(not_before, users.get(user_id, not_before))
        self._copy = _Copy(buckets, sealed, now, now + self.propagation, sessions, users)
        self._last_failure_at = float("-inf")
        return self._copy


def dynamodb_fetcher(table_name: str, client: Any) -> ItemFetcher:
    """BatchGetItem through ``tokencore.awshttp`` (strongly consistent; unanswered keys are a
    failure, so a partial answer never passes for a complete one)."""

    def fetch(keys: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
        if not keys:
            return []
        answer = client.call(
            "BatchGetItem",
            {"RequestItems": {table_name: {"Keys": keys, "ConsistentRead": True}}},
        )
        if answer.get("UnprocessedKeys"):
            raise RuntimeError("unprocessed keys")
        items = answer.get("Responses", {}).get(table_name, [])
        return [item for item in items if isinstance(item, Mapping)]

    return fetch
