"""The refresh rate limit under parallelism: of any number of simultaneous hits in one window,
exactly ``limit.count`` pass, on every backend whose writes are atomic under concurrency (the
in-memory limiter's lock, dynalite's per-item lock, the local stack's serialized endpoint), and
through the whole refresh flow.

``RateLimiter.hit`` is one atomic write: an ``ADD`` that returns the new count (DynamoDB), an
increment under the lock (memory). Each test runs its check against a deliberately non-atomic
limiter too (read the count, wait at a barrier until every thread has read, write count + 1):
every thread then reads the same count and all of them pass, so the same check fails. That is
what proves the check can catch a read-then-write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tokencore.awsclient import call_dynamodb
from tokencore.config import RateLimit
from tokencore.errors import RateLimited
from tokencore.keys import KeySet, StaticKeySource, generate_key
from tokencore.keys.keyring import KeyRing
from tokencore.ratelimit import (
    SCOPE_REFRESH_USER,
    DynamoDBRateLimiter,
    InMemoryRateLimiter,
    RateLimiter,
)
from tokencore.ratelimit.base import RateWindow
from tokencore.service import AuthService, LoginRequest, TokenGrant
from tokencore.sessions import DynamoDBSessionStore, InMemorySessionStore, SessionStore
from tokencore.users import DynamoDBUserStore, InMemoryUserStore, RevokeAllSessions, UserService
from tokencore.users.base import UserStore

from .conftest import Backend, settings_with

WINDOW_START = 1_800_000_000.0  # ManualClock's default: a multiple of 60
THREADS = 30
LIMIT = RateLimit(5, 60)
PASSWORD = "correct horse battery staple"


# --- the limiters under test -------------------------------------------------------------------


def limiter_for(backend: Backend) -> RateLimiter:
    if backend.client is None:
        return InMemoryRateLimiter(backend.clock)
    assert backend.table_name is not None
    return DynamoDBRateLimiter(backend.table_name, backend.clock, boto3_client=backend.client)


class ReadThenWriteMemoryLimiter(InMemoryRateLimiter):
    """Reads the count under the lock, waits until every thread has read, then writes
    count + 1 under the lock: each step is locked, the increment is not."""

    def __init__(self, clock: ManualClock, barrier: threading.Barrier) -> None:
        super().__init__(clock)
        self._barrier = barrier

    def _increment(self, window: RateWindow) -> int:
        with self._lock:
            count = self._counters.get((window.scope, window.key_digest, window.start), [0])[0]
        self._barrier.wait()
        with self._lock:
            self._counters[(window.scope, window.key_digest, window.start)] = [
                count + 1,
                window.expires_at,
            ]
        return count + 1


class ReadThenWriteDynamoDBLimiter(DynamoDBRateLimiter):
    """GetItem, barrier, PutItem of count + 1: two atomic requests, a non-atomic increment."""

    def __init__(self, backend: Backend, barrier: threading.Barrier) -> None:
        assert backend.table_name is not None
        super().__init__(backend.table_name, backend.clock, boto3_client=backend.client)
        self._barrier = barrier

    def _increment(self, window: RateWindow) -> int:
        key = self.window_key(window)
        read = call_dynamodb(
            self._client,
            "get_item",
            {"TableName": self.table_name, "Key": key, "ConsistentRead": True},
            what="test limiter",
        )
        item = read.get("Item")
        count = (int(item["count"]["N"]) if item else 0) + 1
        self._barrier.wait()
        written = {**key, "count": {"N": str(count)}, "expires_at": {"N": str(window.expires_at)}}
        call_dynamodb(
            self._client,
            "put_item",
            {"TableName": self.table_name, "Item": written},
            what="test limiter",
        )
        return count


def read_then_write_limiter(backend: Backend, threads: int) -> RateLimiter:
    barrier = threading.Barrier(threads)
    if backend.client is None:
        return ReadThenWriteMemoryLimiter(backend.clock, barrier)
    return ReadThenWriteDynamoDBLimiter(backend, barrier)


# --- the race and its check --------------------------------------------------------------------


def hit_at_once(limiter: RateLimiter, key: str, limit: RateLimit, threads: int) -> list[bool]:
    """``threads`` hits released together; True for each that passed."""

    def hit() -> bool:
        try:
            limiter.hit(SCOPE_REFRESH_USER, key, limit)
        except RateLimited:
            return False
        return True

    return run_at_once(threads, hit)


def exactly_the_limit_passed(passed: list[bool], limit: RateLimit) -> None:
    assert passed.count(True) == limit.count, f"{passed.count(True)} hits passed"
    assert passed.count(False) == len(passed) - limit.count


def test_simultaneous_hits_in_one_window_pass_exactly_the_limit(
    serializing_backend: Backend,
) -> None:
    serializing_backend.clock.set(WINDOW_START + 7)
    limiter = limiter_for(serializing_backend)
    for round_number in range(3):
        passed = hit_at_once(limiter, f"user-{round_number}", LIMIT, THREADS)
        exactly_the_limit_passed(passed, LIMIT)
        # Refused hits counted too: the window stays closed, and one more hit is refused.
        with pytest.raises(RateLimited):
            limiter.hit(SCOPE_REFRESH_USER, f"user-{round_number}", LIMIT)


def test_a_window_filled_by_parallel_hits_opens_again_only_in_the_next_window(
    serializing_backend: Backend,
) -> None:
    serializing_backend.clock.set(WINDOW_START + 59)
    limiter = limiter_for(serializing_backend)
    exactly_the_limit_passed(hit_at_once(limiter, "user-edge", LIMIT, THREADS), LIMIT)
    serializing_backend.clock.set(WINDOW_START + 60)  # the next window's first instant
    exactly_the_limit_passed(hit_at_once(limiter, "user-edge", LIMIT, THREADS), LIMIT)


def test_sustained_parallel_hits_never_lose_a_count(serializing_backend: Backend) -> None:
    """Several hits per thread, so the threads interleave inside the backend for a while:
    a lost increment would let more than the limit through."""
    limiter = limiter_for(serializing_backend)
    limit = RateLimit(37, 60)
    per_thread = 10

    def hits() -> int:
        passed = 0
        for _ in range(per_thread):
            try:
                limiter.hit(SCOPE_REFRESH_USER, "user-sustained", limit)
                passed += 1
            except RateLimited:
                pass
        return passed

    assert sum(run_at_once(8, hits)) == limit.count


def test_the_check_catches_a_read_then_write_limiter(serializing_backend: Backend) -> None:
    serializing_backend.clock.set(WINDOW_START + 7)
    limiter = read_then_write_limiter(serializing_backend, THREADS)
    passed = hit_at_once(limiter, "user-broken", LIMIT, THREADS)
    with pytest.raises(AssertionError):
        exactly_the_limit_passed(passed, LIMIT)
    assert all(passed)  # every thread read 0 and wrote 1


# --- through the refresh flow ------------------------------------------------------------------


@dataclass
class RefreshWorld:
    service: AuthService
    refresh_tokens: list[str]


def build_world(
    backend: Backend, rate_limiter: Callable[[], RateLimiter], sessions: int
) -> RefreshWorld:
    """One user logged in ``sessions`` times over ``backend``'s stores; each login's refresh
    token, ready to be presented once."""
    settings = settings_with(
        refresh_rate_limit=LIMIT,
        login_rate_limit=RateLimit(1000, 300),
        login_ip_rate_limit=RateLimit(1000, 300),
        token_issuer="https://auth.example.com",
    )
    session_store: SessionStore
    user_store: UserStore
    if backend.client is None:
        session_store = InMemorySessionStore(settings, backend.clock)
        user_store = InMemoryUserStore()
    else:
        assert backend.table_name is not None
        session_store = DynamoDBSessionStore(
            backend.table_name, settings, backend.clock, boto3_client=backend.client
        )
        user_store = DynamoDBUserStore(
            backend.table_name, backend.clock, boto3_client=backend.client
        )
    users = UserService(
        user_store,
        RevokeAllSessions(session_store),
        backend.clock,
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    users.create_user("alice", PASSWORD)
    access = KeySet([generate_key("ES256")], "access")
    refresh = KeySet([generate_key("HS256")], "refresh")

    def ring(keys: KeySet) -> KeyRing:
        return KeyRing(StaticKeySource(keys.verification_keys()), backend.clock, 300, 10)

    logins = AuthService(
        settings,
        users=users,
        sessions=session_store,
        rate_limiter=limiter_for(backend),
        access_signer=access.signer(),
        refresh_signer=refresh.signer(),
        access_keys=ring(access),
        refresh_keys=ring(refresh),
        clock=backend.clock,
    )
    grants = [
        logins.login(LoginRequest("alice", PASSWORD, source_ip="198.51.100.7"))
        for _ in range(sessions)
    ]
    service = AuthService(
        settings,
        users=users,
        sessions=session_store,
        rate_limiter=rate_limiter(),
        access_signer=access.signer(),
        refresh_signer=refresh.signer(),
        access_keys=ring(access),
        refresh_keys=ring(refresh),
        clock=backend.clock,
    )
    return RefreshWorld(service, [grant.refresh_token for grant in grants])


def refresh_all_at_once(world: RefreshWorld) -> list[TokenGrant | RateLimited]:
    tokens = iter(world.refresh_tokens)
    lock = threading.Lock()

    def refresh() -> TokenGrant | RateLimited:
        with lock:
            token = next(tokens)
        try:
            return world.service.refresh(token)
        except RateLimited as refused:
            return refused

    return run_at_once(len(world.refresh_tokens), refresh)


def at_most_the_limit_refreshed(outcomes: list[TokenGrant | RateLimited]) -> None:
    granted = [o for o in outcomes if isinstance(o, TokenGrant)]
    assert len(granted) == LIMIT.count, f"{len(granted)} refreshes passed"
    assert all(isinstance(o, RateLimited) for o in outcomes if o not in granted)
    assert len({grant.session_id for grant in granted}) == LIMIT.count


@pytest.fixture
def refresh_backend(transactional_serializing_backend: Backend) -> Backend:
    """The login stores the session with its counters in one transaction: dynalite has none."""
    transactional_serializing_backend.clock.set(WINDOW_START + 3)
    return transactional_serializing_backend


SESSIONS = 12  # under MAX_SESSIONS_PER_USER (20): no login evicts another


def test_parallel_refreshes_of_one_user_never_exceed_the_refresh_rate_limit(
    refresh_backend: Backend,
) -> None:
    world = build_world(refresh_backend, lambda: limiter_for(refresh_backend), SESSIONS)
    at_most_the_limit_refreshed(refresh_all_at_once(world))


def test_the_refresh_check_catches_a_read_then_write_limiter(refresh_backend: Backend) -> None:
    world = build_world(
        refresh_backend, lambda: read_then_write_limiter(refresh_backend, SESSIONS), SESSIONS
    )
    outcomes = refresh_all_at_once(world)
    with pytest.raises(AssertionError):
        at_most_the_limit_refreshed(outcomes)
    assert all(isinstance(o, TokenGrant) for o in outcomes)
