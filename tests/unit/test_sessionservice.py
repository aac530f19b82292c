"""Session management flows (``tokencore.sessionservice``), shared by the revoker and tokenctl:
revoke one, revoke all (marker, index, then the caller's own session), admin revoke, and the
security events each emits. In-memory stores; the functional tier drives the same flows through
the handler and the CLI."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tokencore.audit import hash_identifier
from tokencore.config import Settings
from tokencore.errors import SessionNotFound, SessionRejected, StoreUnavailable, UserNotFound
from tokencore.sessioncheck import SessionEndedForUser, session_reader_for
from tokencore.sessions import InMemorySessionStore, Session
from tokencore.sessionservice import REASON_USER_REVOKED, SessionService
from tokencore.users import InMemoryUserStore, RevokeAllSessions, User, UserService


@dataclass
class World:
    clock: ManualClock
    sessions: InMemorySessionStore
    users: UserService
    service: SessionService
    alice: User
    bob: User

    def status(self, session: Session) -> str:
        return self.sessions.get_session(session.session_id, active_only=False).status

    def refused_at_the_session_check(self, session: Session) -> bool:
        reader = session_reader_for(self.sessions, self.users.store)
        try:
            reader.check(session.session_id, session.user_id, self.clock.now())
        except SessionRejected:
            return True
        return False


@pytest.fixture
def world() -> World:
    clock = ManualClock(1_800_000_000.0)
    sessions = InMemorySessionStore(replace(Settings(), max_sessions_per_user=50), clock)
    users = UserService(
        InMemoryUserStore(),
        RevokeAllSessions(sessions),
        clock,
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    alice = users.create_user("alice", "a test password")
    bob = users.create_user("bob", "another test password")
    clock.advance(1)
    return World(clock, sessions, users, SessionService(sessions, users), alice, bob)


class Audit(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "security_event"):
            fields = dict(record.__dict__)
            self.events.append({**fields, "level": record.levelno})


@pytest.fixture
def audit() -> Iterator[Audit]:
    handler = Audit()
    target = logging.getLogger("tokencore.audit")
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def hide_from_the_index(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB's by_user index is eventually consistent: a session a second old may be
    missing from it."""
    monkeypatch.setattr(world.sessions, "_iter_user_sessions", lambda user_id: iter(()))


# --- revoke all -------------------------------------------------------------------------------


def test_revoke_all_ends_every_session_and_says_so(world: World, audit: Audit) -> None:
    first = world.sessions.create_session(world.alice.user_id)
    second = world.sessions.create_session(world.alice.user_id)
    others = world.sessions.create_session(world.bob.user_id)
    assert world.service.revoke_all(world.alice.user_id, current_session_id=second.session_id) == 2
    assert world.status(first) == world.status(second) == "revoked"
    assert world.status(others) == "active"
    (event,) = audit.events
    assert event["security_event"] == "sessions_revoked"
    assert (event["reason"], event["count"]) == ("revoke_all", 2)
    assert event["user_id_hash"] == hash_identifier(world.alice.user_id)
    assert event["level"] == logging.INFO


def test_revoke_all_revokes_the_callers_session_the_index_has_not_shown(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = world.sessions.create_session(world.alice.user_id)
    hide_from_the_index(world, monkeypatch)
    assert world.service.revoke_all(world.alice.user_id, current_session_id=current.session_id)
    assert world.status(current) == "revoked"


def test_without_the_third_step_the_callers_session_record_stays_active(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the third step exists: the marker alone refuses the session at the session check,
    but its own record would still read active (what every other reader of it sees)."""
    current = world.sessions.create_session(world.alice.user_id)
    world.clock.advance(1)
    hide_from_the_index(world, monkeypatch)
    assert world.service.revoke_all(world.alice.user_id) == 0
    assert world.status(current) == "active"
    assert world.refused_at_the_session_check(current)


def test_the_marker_is_written_before_the_index_is_read(
    world: World, monkeypatch: pytest.MonkeyPatch, audit: Audit
) -> None:
    session = world.sessions.create_session(world.alice.user_id)
    world.clock.advance(1)

    def index_down(user_id: str) -> Iterator[Session]:
        raise StoreUnavailable("injected")

    monkeypatch.setattr(world.sessions, "_iter_user_sessions", index_down)
    with pytest.raises(StoreUnavailable):
        world.service.revoke_all(world.alice.user_id, current_session_id=session.session_id)
    # Nothing said done, yet the marker already refuses the session; a retry finishes.
    assert audit.events == []
    with pytest.raises(SessionEndedForUser):
        session_reader_for(world.sessions, world.users.store).check(
            session.session_id, world.alice.user_id, world.clock.now()
        )
    monkeypatch.undo()
    assert world.service.revoke_all(world.alice.user_id, current_session_id=session.session_id)
    assert world.status(session) == "revoked"


def test_a_current_session_of_another_user_is_left_alone(world: World) -> None:
    bobs = world.sessions.create_session(world.bob.user_id)
    world.service.revoke_all(world.alice.user_id, current_session_id=bobs.session_id)
    assert world.status(bobs) == "active"


# --- revoke one -------------------------------------------------------------------------------


def test_a_user_revokes_one_of_their_own_sessions_once(world: World, audit: Audit) -> None:
    session = world.sessions.create_session(world.alice.user_id)
    owner = world.alice.user_id
    assert world.service.revoke_session(session.session_id, REASON_USER_REVOKED, owner=owner)
    assert not world.service.revoke_session(session.session_id, REASON_USER_REVOKED, owner=owner)
    (event,) = audit.events
    assert event["security_event"] == "session_revoked"
    assert event["reason"] == REASON_USER_REVOKED
    assert event["session_id_hash"] == hash_identifier(session.session_id)
    assert event["user_id_hash"] == hash_identifier(owner)


def test_another_users_session_is_not_found_like_an_unknown_one(world: World, audit: Audit) -> None:
    bobs = world.sessions.create_session(world.bob.user_id)
    for session_id in (bobs.session_id, "no-such-session", "a b"):
        with pytest.raises(SessionNotFound):
            world.service.revoke_session(session_id, REASON_USER_REVOKED, owner=world.alice.user_id)
    assert world.status(bobs) == "active"
    assert audit.events == []


def test_an_operator_revokes_any_session(world: World, audit: Audit) -> None:
    bobs = world.sessions.create_session(world.bob.user_id)
    assert world.service.revoke_session(bobs.session_id, "admin")
    assert world.status(bobs) == "revoked"
    (event,) = audit.events
    assert (event["security_event"], event["reason"]) == ("session_revoked", "admin")


# --- admin revoke -----------------------------------------------------------------------------


def test_an_admin_revokes_every_session_of_a_user(world: World, audit: Audit) -> None:
    sessions = [world.sessions.create_session(world.bob.user_id) for _ in range(2)]
    assert world.service.admin_revoke(world.bob.user_id, admin_id=world.alice.user_id) == 2
    assert all(world.status(s) == "revoked" for s in sessions)
    (event,) = audit.events
    assert (event["security_event"], event["reason"], event["count"]) == (
        "sessions_revoked",
        "admin",
        2,
    )
    assert event["actor"] == "admin"
    assert event["admin"] == hash_identifier(world.alice.user_id)
    assert event["level"] == logging.WARNING


def test_the_operator_revokes_a_disabled_users_sessions_too(world: World, audit: Audit) -> None:
    session = world.sessions.create_session(world.bob.user_id)
    world.users.store.set_disabled(world.bob.user_id, True)
    assert world.service.admin_revoke(world.bob.user_id) == 1
    assert world.status(session) == "revoked"
    (event,) = audit.events
    assert event["actor"] == "operator"
    assert "admin" not in event


def test_an_unknown_user_is_refused_before_anything_is_written(world: World, audit: Audit) -> None:
    with pytest.raises(UserNotFound):
        world.service.admin_revoke("no-such-user", admin_id=world.alice.user_id)
    assert audit.events == []
