"""Many presentations of one refresh token at once: exactly one rotation is written.

Run on the backends whose conditional writes are atomic under concurrency: the in-memory store
(one lock), dynalite (a lock per item, over real HTTP) and the local stack's embedded endpoint
(moto's server with DynamoDB serialized). Not on moto in process: it checks a condition and then
writes without a lock, and about 1% of such races produce two winners.

All threads present the token at the same ManualClock instant. The winner rotates; every loser
presents what is now the *previous* token inside the grace window and receives the successor the
winner was issued. With a grace window of 0 the losers are reuse instead: the first to notice
revokes the session (once), the rest find it revoked.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from tokencore.config import Settings
from tokencore.errors import RefreshReuseDetected, SessionRevoked
from tokencore.sessions import (
    InMemorySessionStore,
    RefreshReuseRevoked,
    RotationResult,
    SessionStore,
    new_jti,
)
from tokencore.sessions.base import Rotation, WriteOutcome

from .conftest import Backend, settings_with

THREADS = 50
USER = "user-1"
# Each dynalite or motoserver round is ~100 HTTP requests made from 50 threads.
ROUNDS = {"memory": 20, "dynalite": 20, "motoserver": 10}
STRICT_ROUNDS = {"memory": 10, "dynalite": 5, "motoserver": 5}

Outcome = RotationResult | Exception
Check = Callable[[SessionStore, list[Outcome]], None]


class AcceptedWrites:
    """Counts the UpdateItem and TransactWriteItems calls DynamoDB accepted (HTTP 200): writes
    that happened (a revocation is a transaction: the session and its revocation-list entry)."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._events = client.meta.events
        for operation in ("UpdateItem", "TransactWriteItems"):
            self._events.register(f"after-call.dynamodb.{operation}", self._count)

    def _count(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            with self._lock:
                self.count += 1

    def close(self) -> None:
        for operation in ("UpdateItem", "TransactWriteItems"):
            self._events.unregister(f"after-call.dynamodb.{operation}", self._count)


def present_concurrently(
    store: SessionStore, pool: ThreadPoolExecutor, session_id: str, jti: str
) -> list[Outcome]:
    barrier = threading.Barrier(THREADS)

    def present(_: int) -> Outcome:
        barrier.wait()
        try:
            return store.rotate(session_id, jti, 1, new_jti())
        except Exception as exc:
            return exc

    return list(pool.map(present, range(THREADS)))


def all_get_the_same_successor(store: SessionStore, outcomes: list[Outcome]) -> None:
    assert [o for o in outcomes if isinstance(o, Exception)] == []
    results = [o for o in outcomes if isinstance(o, RotationResult)]
    assert sum(not r.grace_replay for r in results) == 1
    assert len({(r.jti, r.generation, r.refresh_expires_at) for r in results}) == 1
    stored = store.get_session(results[0].session.session_id)
    assert (stored.current_jti, stored.generation) == (results[0].jti, 2)


def one_winner_and_one_reuse_report(store: SessionStore, outcomes: list[Outcome]) -> None:
    winners = [o for o in outcomes if isinstance(o, RotationResult)]
    reports = [o for o in outcomes if isinstance(o, RefreshReuseRevoked)]
    refused = [
        o
        for o in outcomes
        if isinstance(o, SessionRevoked) and not isinstance(o, RefreshReuseDetected)
    ]
    assert len(winners) == 1
    assert not winners[0].grace_replay
    assert len(reports) == 1
    assert len(refused) == THREADS - 2
    stored = store.get_session(winners[0].session.session_id, active_only=False)
    assert stored.revoked_reason == "refresh_reuse"


@contextmanager
def frequent_thread_switches(backend: Backend) -> Iterator[None]:
    """In process, switch threads every microsecond instead of every 5 ms, so that an unlocked
    check-then-write in the in-memory store would interleave (and fail the checks). Over HTTP
    the requests interleave anyway."""
    if backend.client is not None:
        yield
        return
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def race(backend: Backend, store: SessionStore, rounds: int, check: Check) -> None:
    writes = AcceptedWrites(backend.client) if backend.client is not None else None
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool, frequent_thread_switches(backend):
            for _ in range(rounds):
                session = store.create_session(USER)
                before = writes.count if writes is not None else 0
                outcomes = present_concurrently(
                    store, pool, session.session_id, session.current_jti
                )
                check(store, outcomes)
                if writes is not None:
                    # The rotation, plus the reuse revocation when there is one.
                    revocations = sum(isinstance(o, RefreshReuseRevoked) for o in outcomes)
                    assert writes.count - before == 1 + revocations
    finally:
        if writes is not None:
            writes.close()


def test_one_token_presented_by_50_threads_rotates_once_and_all_get_the_same_successor(
    serializing_backend: Backend,
) -> None:
    store = serializing_backend.store()
    race(serializing_backend, store, ROUNDS[serializing_backend.name], all_get_the_same_successor)


@pytest.mark.transactions
def test_without_a_grace_window_the_losers_revoke_the_session_exactly_once(
    serializing_backend: Backend,
) -> None:
    store = serializing_backend.store(settings_with(refresh_reuse_grace_seconds=0))
    rounds = STRICT_ROUNDS[serializing_backend.name]
    race(serializing_backend, store, rounds, one_winner_and_one_reuse_report)


class CheckThenWriteStore(InMemorySessionStore):
    """A store that checks the condition, then writes without holding the lock: moto's flaw,
    made certain by letting every thread check before any writes."""

    def __init__(self, settings: Settings, barrier: threading.Barrier) -> None:
        super().__init__(settings)
        self._barrier = barrier

    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        current = self._read(rotation.session_id)
        self._barrier.wait()
        if current is None or not rotation.allowed_on(current):
            return WriteOutcome(applied=False, session=current)
        updated = self._items[rotation.session_id] = rotation.apply_to(current)
        return WriteOutcome(applied=True, session=updated)


def test_the_race_check_catches_a_store_without_atomic_conditional_writes() -> None:
    store = CheckThenWriteStore(Settings(), threading.Barrier(THREADS))
    session = store.create_session(USER)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        outcomes = present_concurrently(store, pool, session.session_id, session.current_jti)
    with pytest.raises(AssertionError):
        all_get_the_same_successor(store, outcomes)
    assert sum(isinstance(o, RotationResult) and not o.grace_replay for o in outcomes) > 1
