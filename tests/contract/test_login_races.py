"""Parallel password guesses against the login limits.

N attempts sent at once against a window of L check at most L passwords, per username and per
source address: the attempt takes its slot in ONE conditional write whose condition is the limit,
before any password work (tokencore.service). Proven through the whole login flow on every
backend whose writes are atomic under concurrency, transactions included: the in-memory stores
and the local stack's embedded endpoint (``motoserver``). Argon2 runs are counted by the hasher,
so "checked" means a password was really verified. Each check is shown to catch a limiter that
checks and then counts without one atomic step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tokencore.clock import Clock
from tokencore.config import Settings
from tokencore.errors import InvalidCredentials, RateLimited
from tokencore.keys import KeySet, PrivateKeyEntry, StaticKeySource, generate_key
from tokencore.keys.keyring import KeyRing
from tokencore.ratelimit import DynamoDBRateLimiter, InMemoryRateLimiter, RateLimiter
from tokencore.ratelimit.base import RateWindow, first_full
from tokencore.service import AuthService, LoginRequest, TokenGrant
from tokencore.sessions import DynamoDBSessionStore, InMemorySessionStore, SessionStore
from tokencore.users import (
    DynamoDBUserStore,
    InMemoryUserStore,
    RevokeAllSessions,
    UserService,
)

from .conftest import Backend

ATTEMPTS = 30
LIMIT = 10
PASSWORD = "the right password for alice"  # test-only


class CountingHasher(PasswordHasher):
    """Cheap Argon2 that counts verifies (thread-safe) and can watch each one."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verifies = 0
        self.on_verify: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.verifies += 1
        if self.on_verify is not None:
            self.on_verify()
        return super().verify(hash, password)


@dataclass
class World:
    service: AuthService
    hasher: CountingHasher
    limiter: RateLimiter
    sessions: SessionStore


Outcome = TokenGrant | Exception


@pytest.fixture(scope="module")
def keys() -> tuple[PrivateKeyEntry, PrivateKeyEntry]:
    return generate_key("ES256"), generate_key("HS256")


def _ring(key_set: KeySet, clock: Clock) -> KeyRing:
    return KeyRing(StaticKeySource(key_set.verification_keys()), clock, 300, 10)


def build(
    backend: Backend,
    keys: tuple[PrivateKeyEntry, PrivateKeyEntry],
    limiter: RateLimiter | None = None,
    **env: str,
) -> World:
    clock = backend.clock
    settings = Settings.from_env({"TOKEN_ISSUER": "https://auth.example.com", **env})
    hasher = CountingHasher()
    sessions: SessionStore
    if backend.table_name is None:
        sessions = InMemorySessionStore(settings, clock)
        user_store: InMemoryUserStore | DynamoDBUserStore = InMemoryUserStore()
        limiter = InMemoryRateLimiter(clock) if limiter is None else limiter
    else:
        table, client = backend.table_name, backend.client
        sessions = DynamoDBSessionStore(table, settings, clock, boto3_client=client)
        user_store = DynamoDBUserStore(table, clock, boto3_client=client)
        if limiter is None:
            limiter = DynamoDBRateLimiter(table, clock, boto3_client=client)
    users = UserService(user_store, RevokeAllSessions(sessions), clock, hasher=hasher)
    for name in ("alice", *(f"user{n}" for n in range(ATTEMPTS))):
        users.create_user(name, PASSWORD)
    access, refresh = KeySet([keys[0]], "access"), KeySet([keys[1]], "refresh")
    service = AuthService(
        settings,
        users=users,
        sessions=sessions,
        rate_limiter=limiter,
        access_signer=access.signer(),
        refresh_signer=refresh.signer(),
        access_keys=_ring(access, clock),
        refresh_keys=_ring(refresh, clock),
        clock=clock,
    )
    hasher.verifies = 0  # creating the users hashed, it did not verify; start clean anyway
    return World(service, hasher, limiter, sessions)


def attempt(world: World, username: str, password: str, source_ip: str) -> Outcome:
    try:
        return world.service.login(LoginRequest(username, password, source_ip=source_ip))
    except Exception as exc:
        return exc


def guesses_at_one_username(world: World) -> list[Outcome]:
    """ATTEMPTS guesses at alice from as many addresses at once; one carries her password."""
    addresses = iter(range(ATTEMPTS))
    lock = threading.Lock()

    def guess() -> Outcome:
        with lock:
            n = next(addresses)
        password = PASSWORD if n == 0 else f"guess-{n}"
        return attempt(world, "alice", password, f"198.51.100.{n + 1}")

    return run_at_once(ATTEMPTS, guess)


def guesses_from_one_address(world: World) -> list[Outcome]:
    """ATTEMPTS guesses at as many usernames at once, all from one address."""
    names = iter(range(ATTEMPTS))
    lock = threading.Lock()

    def guess() -> Outcome:
        with lock:
            n = next(names)
        return attempt(world, f"user{n}", "wrong", "203.0.113.9")

    return run_at_once(ATTEMPTS, guess)


def at_most_the_limit_checked(world: World, outcomes: Sequence[Outcome], scope: str) -> None:
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    checked = [o for o in outcomes if not isinstance(o, RateLimited)]
    assert [o for o in checked if not isinstance(o, TokenGrant | InvalidCredentials)] == []
    assert world.hasher.verifies == len(checked) <= LIMIT
    assert len(checked) == LIMIT  # and the window's slots were all usable
    assert {r.scope for r in refused} == {scope}


def test_parallel_guesses_at_one_username_check_at_most_the_limit(
    transactional_serializing_backend: Backend, keys: tuple[PrivateKeyEntry, PrivateKeyEntry]
) -> None:
    world = build(transactional_serializing_backend, keys, LOGIN_RATE_LIMIT=f"{LIMIT}/300")
    outcomes = guesses_at_one_username(world)
    at_most_the_limit_checked(world, outcomes, "login_user")


def test_parallel_guesses_from_one_address_check_at_most_the_ip_limit(
    transactional_serializing_backend: Backend, keys: tuple[PrivateKeyEntry, PrivateKeyEntry]
) -> None:
    world = build(transactional_serializing_backend, keys, LOGIN_IP_RATE_LIMIT=f"{LIMIT}/300")
    outcomes = guesses_from_one_address(world)
    at_most_the_limit_checked(world, outcomes, "login_ip")


def test_once_the_window_is_full_right_and_wrong_passwords_get_one_answer_and_no_argon2(
    transactional_serializing_backend: Backend, keys: tuple[PrivateKeyEntry, PrivateKeyEntry]
) -> None:
    world = build(transactional_serializing_backend, keys, LOGIN_RATE_LIMIT="2/300")
    for _ in range(2):
        assert isinstance(attempt(world, "alice", "wrong", "198.51.100.1"), InvalidCredentials)
    verifies = world.hasher.verifies
    right = attempt(world, "alice", PASSWORD, "198.51.100.2")
    wrong = attempt(world, "alice", "wrong", "198.51.100.3")
    assert isinstance(right, RateLimited)
    assert isinstance(wrong, RateLimited)
    assert (right.code, right.message, right.scope, right.retry_after_seconds) == (
        wrong.code,
        wrong.message,
        wrong.scope,
        wrong.retry_after_seconds,
    )
    assert world.hasher.verifies == verifies  # the same work: none


def test_every_checked_password_holds_a_slot_taken_before_the_check(
    transactional_serializing_backend: Backend, keys: tuple[PrivateKeyEntry, PrivateKeyEntry]
) -> None:
    """Counting after the password work (the old order) is the race itself: each Argon2 run
    must find its own attempt already counted."""
    backend = transactional_serializing_backend
    limiter = RecordingLimiter(backend)
    world = build(backend, keys, limiter=limiter, LOGIN_RATE_LIMIT=f"{LIMIT}/300")
    seen: list[tuple[int, int]] = []
    world.hasher.on_verify = lambda: seen.append((world.hasher.verifies, limiter.admitted))
    guesses_at_one_username(world)
    assert seen
    assert all(admitted >= verified for verified, admitted in seen)


# --- the checks catch a limiter without one atomic step ------------------------------------------


class RecordingLimiter(RateLimiter):
    """The backend's own limiter, counting the admissions it granted (thread-safe)."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend.clock)
        self._inner: RateLimiter = (
            InMemoryRateLimiter(backend.clock)
            if backend.table_name is None
            else DynamoDBRateLimiter(backend.table_name, backend.clock, boto3_client=backend.client)
        )
        self.admitted = 0
        self._count_lock = threading.Lock()

    def _increment(self, window: RateWindow) -> int:
        return self._inner._increment(window)

    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        refused = self._inner._increment_below(windows)
        if refused is None:
            with self._count_lock:
                self.admitted += 1
        return refused


class CheckThenCountLimiter(InMemoryRateLimiter):
    """Reads the counters, then counts: every attempt reads before any counts (a barrier makes
    the interleaving certain), as the login did when it counted after the password check."""

    def __init__(self, clock: Clock, parties: int) -> None:
        super().__init__(clock)
        self._barrier = threading.Barrier(parties)

    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        with self._lock:
            counts = [self._counters.get((w.scope, w.key_digest, w.start), [0])[0] for w in windows]
        self._barrier.wait()
        refused = first_full(windows, counts)
        if refused is None:
            with self._lock:
                for window in windows:
                    self._add_one(window)
        return refused


def test_the_check_catches_a_limiter_that_checks_then_counts(
    keys: tuple[PrivateKeyEntry, PrivateKeyEntry], clock: ManualClock
) -> None:
    limiter = CheckThenCountLimiter(clock, ATTEMPTS)
    world = build(Backend("memory", clock), keys, limiter=limiter, LOGIN_RATE_LIMIT=f"{LIMIT}/300")
    outcomes = guesses_at_one_username(world)
    with pytest.raises(AssertionError):
        at_most_the_limit_checked(world, outcomes, "login_user")
    assert world.hasher.verifies == ATTEMPTS  # every guess was checked
