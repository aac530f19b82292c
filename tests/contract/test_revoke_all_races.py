"""Revoke-all racing a new login: once it returns, no session created before it passes a session
check or a refresh, including one whose login raced it.

Revoke-all writes the user's marker, then revokes what the by_user index shows. A login that
read the clock before the marker and writes its session after the index query (or whose
session DynamoDB has not indexed yet) escapes the bulk revocation; only the marker still names
it. So the session check reads the user with the session (tokencore.sessioncheck), and refresh
re-reads the user (``ended_by``). Run on the backends whose writes are atomic, transactions
included (users are created in one): memory and the local stack's endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tokencore.errors import SessionRejected
from tokencore.sessioncheck import (
    SessionEndedForUser,
    SessionReader,
    ended_by,
    session_reader_for,
)
from tokencore.sessions import DynamoDBSessionStore, InMemorySessionStore, SessionStore
from tokencore.sessions.base import Session
from tokencore.users import (
    DynamoDBUserStore,
    InMemoryUserStore,
    RevokeAllSessions,
    User,
    UserService,
    UserStore,
)

from .conftest import Backend, settings_with

LOGINS = 12


class TickingClock(ManualClock):
    """Every reading is a little later than the last, as a real clock's are (thread-safe)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._tick_lock = threading.Lock()

    def now(self) -> float:
        with self._tick_lock:
            self.advance(0.001)
            return super().now()


class World:
    def __init__(self, backend: Backend, clock: ManualClock) -> None:
        settings = settings_with(max_sessions_per_user=LOGINS * 2)
        self.sessions: SessionStore
        store: UserStore
        if backend.table_name is None:
            self.sessions = InMemorySessionStore(settings, clock)
            store = InMemoryUserStore()
        else:
            self.sessions = DynamoDBSessionStore(
                backend.table_name, settings, clock, boto3_client=backend.client
            )
            store = DynamoDBUserStore(backend.table_name, clock, boto3_client=backend.client)
        self.users = UserService(
            store,
            RevokeAllSessions(self.sessions),
            clock,
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        self.reader: SessionReader = session_reader_for(self.sessions, store)
        self.clock = clock
        self.user: User = self.users.create_user("alice", "a test password")

    def refused_everywhere(self, session: Session) -> None:
        """Refused by the session check (sensitive routes) and by refresh's rule."""
        with pytest.raises(SessionRejected):
            self.reader.check(session.session_id, self.user.user_id, self.clock.now())
        assert ended_by(self.users.get_user(self.user.user_id), session) is not None


def test_a_login_written_after_the_bulk_revocation_looked_is_still_refused(
    transactional_serializing_backend: Backend,
) -> None:
    world = World(transactional_serializing_backend, transactional_serializing_backend.clock)
    # The login reads the clock (its session is created now) ...
    raced = world.sessions.new_session(world.user.user_id)
    world.clock.advance(1)
    # ... revoke-all runs from start to end: the marker, then the index (empty so far) ...
    assert world.users.revoke_all_sessions(world.user.user_id, "revoke_all") == 0
    # ... and only then does the login write its session, which nothing revoked.
    world.sessions.insert_new(raced)
    assert world.sessions.get_session(raced.session_id).status == "active"
    world.refused_everywhere(raced)
    with pytest.raises(SessionEndedForUser) as caught:
        world.reader.check(raced.session_id, world.user.user_id, world.clock.now())
    assert caught.value.reason == "revoke_all"


def test_a_session_the_index_did_not_show_is_still_refused(
    transactional_serializing_backend: Backend,
) -> None:
    """DynamoDB's index is eventually consistent: a session written before revoke-all may not
    be listed yet."""
    world = World(transactional_serializing_backend, transactional_serializing_backend.clock)
    hidden = world.sessions.create_session(world.user.user_id)
    world.clock.advance(1)
    iterate = world.sessions._iter_user_sessions
    world.sessions._iter_user_sessions = lambda user_id: iter(())  # type: ignore[method-assign]
    world.users.revoke_all_sessions(world.user.user_id, "revoke_all")
    world.sessions._iter_user_sessions = iterate  # type: ignore[method-assign]
    assert world.sessions.get_session(hidden.session_id).status == "active"
    world.refused_everywhere(hidden)


def test_logins_racing_a_revoke_all_never_outlive_it(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    world = World(backend, TickingClock(backend.clock.now()))
    lock = threading.Lock()
    created: list[Session] = []
    marker: list[float] = []

    def login() -> None:
        session = world.sessions.create_session(world.user.user_id)
        with lock:
            created.append(session)

    def revoke_all() -> None:
        world.users.revoke_all_sessions(world.user.user_id, "revoke_all")
        marker.append(world.users.get_user(world.user.user_id).sessions_revoked_at)

    actions: list[Callable[[], None]] = [login] * LOGINS + [revoke_all]
    order = iter(range(len(actions)))
    run_at_once(len(actions), lambda: actions[next(order)]())

    (revoked_at,) = marker
    before = [s for s in created if s.created_at < revoked_at]
    assert len(created) == LOGINS
    for session in before:
        world.refused_everywhere(session)
    # (A login whose clock reading came after the marker may stand, or may have been caught by
    # the bulk revocation if it was written before the index was read: either is correct.)


def test_the_check_catches_a_session_check_that_reads_the_session_alone(
    transactional_serializing_backend: Backend,
) -> None:
    """What the authorizer did before: the session's own record says active."""
    world = World(transactional_serializing_backend, transactional_serializing_backend.clock)
    raced = world.sessions.new_session(world.user.user_id)
    world.clock.advance(1)
    world.users.revoke_all_sessions(world.user.user_id, "revoke_all")
    world.sessions.insert_new(raced)
    session_alone = world.sessions.get_session(raced.session_id)  # no error: the gap
    assert session_alone.is_active(world.clock.now())
