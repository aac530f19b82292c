"""Logins racing the session cap: the newest ``max_sessions_per_user`` sessions survive, exactly.

Each login inserts its session, then reads the user's sessions and evicts those with ``max``
newer ones (tokencore.sessions.base ``enforce_cap``). Run with every login inserting before any
of them looks (a barrier in the index read), the interleaving in which a rule that leaves the
caller's own session out of the count lets racing logins evict each other's sessions and end
below the cap: the check below catches that rule.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from tests.concurrency import run_at_once
from tokencore.sessions import InMemorySessionStore, SessionStore
from tokencore.sessions.base import REASON_EVICTED, Revocation, Session, creation_order

from .conftest import Backend, settings_with

CAP = 5
LOGINS = 12
USER = "user-1"


def barriered(store: SessionStore, parties: int) -> SessionStore:
    """``store`` with the first ``parties`` index reads held until all of them have started
    (each login reads after its insert, so every insert precedes every read)."""
    barrier = threading.Barrier(parties)
    calls = itertools.count()
    iterate = store._iter_user_sessions

    def iter_after_all_inserts(user_id: str) -> Iterator[Session]:
        if next(calls) < parties:
            barrier.wait(timeout=60)
        return iterate(user_id)

    store._iter_user_sessions = iter_after_all_inserts  # type: ignore[method-assign]
    return store


def login_all_at_once(store: SessionStore) -> list[Session]:
    return run_at_once(LOGINS, lambda: store.create_session(USER))


def the_newest_cap_survive(store: SessionStore, created: list[Session]) -> None:
    active = {s.session_id for s in store.list_sessions(USER)}
    newest = {s.session_id for s in sorted(created, key=creation_order)[-CAP:]}
    assert active == newest
    for session in created:
        if session.session_id not in newest:
            evicted = store.get_session(session.session_id, active_only=False)
            assert evicted.revoked_reason == REASON_EVICTED


@pytest.mark.transactions
def test_racing_logins_leave_exactly_the_newest_sessions(serializing_backend: Backend) -> None:
    store = barriered(
        serializing_backend.store(settings_with(max_sessions_per_user=CAP)),
        LOGINS,
    )
    created = login_all_at_once(store)
    the_newest_cap_survive(store, created)


def test_racing_logins_below_the_cap_evict_nothing(serializing_backend: Backend) -> None:
    store = barriered(
        serializing_backend.store(settings_with(max_sessions_per_user=LOGINS)),
        LOGINS,
    )
    created = login_all_at_once(store)
    assert len(store.list_sessions(USER)) == LOGINS
    assert {s.session_id for s in store.list_sessions(USER)} == {s.session_id for s in created}


class OwnSessionExcluded(InMemorySessionStore):
    """The natural rule this replaced: count the others, evict the oldest of them."""

    def _enforce_cap(self, created: Session, now: float) -> None:
        others = [
            s
            for s in self._iter_user_sessions(created.user_id)
            if s.session_id != created.session_id and s.is_active(now)
        ]
        excess = len(others) + 1 - self.settings.max_sessions_per_user
        for oldest in others[: max(0, excess)]:
            self._write_revocation(Revocation(oldest.session_id, REASON_EVICTED, now))


def test_the_check_catches_logins_that_leave_their_own_session_out() -> None:
    store = barriered(OwnSessionExcluded(settings_with(max_sessions_per_user=CAP)), LOGINS)
    created = login_all_at_once(store)
    try:
        the_newest_cap_survive(store, created)
    except AssertionError:
        pass
    else:
        raise AssertionError("the check passed a rule that over-evicts under races")
    assert len(store.list_sessions(USER)) < CAP  # racing logins evicted each other's sessions


@pytest.mark.transactions
def test_a_login_at_the_cap_keeps_its_own_session_within_one_second(backend: Backend) -> None:
    """Logins one after another, a millisecond apart: each evicts the oldest, never itself
    (ranking by the index's whole second would put the new session below older ones of the
    same second at random: half the time)."""
    store = backend.store(settings_with(max_sessions_per_user=2))
    created = []
    for _ in range(20):
        backend.clock.advance(0.001)
        created.append(store.create_session(USER))
        active = {s.session_id for s in store.list_sessions(USER)}
        assert created[-1].session_id in active
    assert active == {created[-2].session_id, created[-1].session_id}


@pytest.mark.transactions
def test_a_session_the_index_does_not_show_yet_still_counts(backend: Backend) -> None:
    """On DynamoDB the index may lag: the login's own session counts even before it shows."""
    store = backend.store(settings_with(max_sessions_per_user=2))
    older = []
    for _ in range(2):
        older.append(store.create_session(USER))
        backend.clock.advance(1)  # index_sort_key orders by the second, then by id
    iterate = store._iter_user_sessions
    store._iter_user_sessions = lambda user_id: iter(  # type: ignore[method-assign]
        [s for s in iterate(user_id) if s.session_id in {o.session_id for o in older}]
    )
    newest = store.create_session(USER)
    store._iter_user_sessions = iterate  # type: ignore[method-assign]
    active = {s.session_id for s in store.list_sessions(USER)}
    assert active == {older[1].session_id, newest.session_id}
