"""The grace window under parallelism, where it is tightest: at its boundary, and when a replay
of the previous token races the legitimate holder's next rotation.

test_session_races.py covers the plain case (50 presentations of one current token). Here:

* Presentations of the previous token racing at ``rotated_at + grace``: the window is half-open,
  so one ten-thousandth of a second before the boundary gets the successor and the boundary
  instant itself is reuse. However they interleave, the session is revoked exactly once (one
  reuse report), nothing is rotated, nobody at the boundary gets a token and nobody inside the
  window gets anything but the one successor.
* A replay of the previous token racing the holder's rotation of the current one: after the
  window, the session always ends revoked and the reuse is reported once, whichever lands first
  (the rotation can never undo the revocation); inside the window, the lineage never forks.

Run on the backends whose conditional writes are atomic under concurrency; each check is also
run against a store that checks, then writes (with barriers making the worst interleaving
certain), and fails there.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tokencore.config import Settings
from tokencore.errors import SessionRevoked
from tokencore.sessions import (
    InMemorySessionStore,
    RefreshReuseRevoked,
    RotationResult,
    SessionStore,
    new_jti,
)
from tokencore.sessions.base import Revocation, Rotation, WriteOutcome

from .conftest import Backend
from .test_session_races import AcceptedWrites

USER = "user-1"
GRACE = 30  # the default REFRESH_REUSE_GRACE_SECONDS
T0 = 1_800_000_000.0
ROTATED_AT = T0 + 10
INSIDE = ROTATED_AT + GRACE - 0.0001
BOUNDARY = ROTATED_AT + GRACE
PER_SIDE = 16
ROUNDS = {"memory": 20, "dynalite": 8, "motoserver": 8}

Outcome = RotationResult | Exception


@dataclass(frozen=True)
class Rotated:
    """A session rotated once at ROTATED_AT: its first token is now the previous one."""

    session_id: str
    previous_jti: str
    current_jti: str


def rotated_session(store: SessionStore) -> Rotated:
    session = store.create_session(USER)
    result = store.rotate(session.session_id, session.current_jti, 1, new_jti(), ROTATED_AT)
    return Rotated(session.session_id, session.current_jti, result.jti)


# --- many presentations of the previous token at the boundary ----------------------------------


@dataclass(frozen=True)
class Presented:
    at: float
    outcome: Outcome


def present_previous_around_the_boundary(store: SessionStore, rotated: Rotated) -> list[Presented]:
    instants = iter([INSIDE, BOUNDARY] * PER_SIDE)
    lock = threading.Lock()

    def present() -> Presented:
        with lock:
            at = next(instants)
        try:
            outcome: Outcome = store.rotate(
                rotated.session_id, rotated.previous_jti, 1, new_jti(), at
            )
        except Exception as exc:
            outcome = exc
        return Presented(at, outcome)

    return run_at_once(2 * PER_SIDE, present)


def revoked_once_and_never_forked(
    store: SessionStore, rotated: Rotated, presented: list[Presented]
) -> None:
    inside = [p.outcome for p in presented if p.at == INSIDE]
    boundary = [p.outcome for p in presented if p.at == BOUNDARY]
    reports = [o for o in boundary if isinstance(o, RefreshReuseRevoked)]
    assert len(reports) == 1, f"{len(reports)} reuse reports"
    assert reports[0].event.classification == "recent_previous"
    # Nobody at the boundary gets a token; everyone else finds the session revoked.
    assert all(isinstance(o, SessionRevoked | RefreshReuseRevoked) for o in boundary)
    assert not any(isinstance(o, RefreshReuseRevoked) for o in inside)
    for outcome in inside:  # the one successor (a grace replay), or the revoked session
        if isinstance(outcome, RotationResult):
            assert outcome.grace_replay
            assert (outcome.jti, outcome.generation) == (rotated.current_jti, 2)
        else:
            assert isinstance(outcome, SessionRevoked), repr(outcome)
    stored = store.get_session(rotated.session_id, active_only=False)
    assert stored.revoked_reason == "refresh_reuse"
    assert (stored.current_jti, stored.generation) == (rotated.current_jti, 2)  # no rotation


@pytest.fixture
def store(serializing_backend: Backend) -> SessionStore:
    serializing_backend.clock.set(T0)
    return serializing_backend.store()


@pytest.mark.transactions
def test_presentations_racing_at_the_window_boundary_revoke_exactly_once(
    serializing_backend: Backend, store: SessionStore
) -> None:
    writes = AcceptedWrites(serializing_backend.client) if serializing_backend.client else None
    try:
        for _ in range(ROUNDS[serializing_backend.name] // 2):
            rotated = rotated_session(store)
            before = writes.count if writes is not None else 0
            presented = present_previous_around_the_boundary(store, rotated)
            revoked_once_and_never_forked(store, rotated, presented)
            if writes is not None:
                assert writes.count - before == 1  # the revocation, and nothing else
    finally:
        if writes is not None:
            writes.close()


class CheckThenWriteStore(InMemorySessionStore):
    """Reads under the lock, waits at a barrier, then writes what it decided on that read.

    ``refused_barrier``: every presentation's rotation read happens before any write (so every
    thread sees the session active). ``revocation_barrier``: every revoking thread reads before
    any of them writes."""

    def __init__(
        self,
        settings: Settings,
        *,
        refused_barrier: threading.Barrier | None = None,
        revocation_barrier: threading.Barrier | None = None,
    ) -> None:
        super().__init__(settings, ManualClock(T0))
        self.refused_barrier = refused_barrier
        self.revocation_barrier = revocation_barrier
        self.revoked = threading.Event()

    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        current = self._read(rotation.session_id)
        if self.refused_barrier is not None:
            self.refused_barrier.wait()
        if current is None or not rotation.allowed_on(current):
            return WriteOutcome(applied=False, session=current)
        updated = self._items[rotation.session_id] = rotation.apply_to(current)
        return WriteOutcome(applied=True, session=updated)

    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        current = self._read(revocation.session_id)
        if self.revocation_barrier is not None:
            self.revocation_barrier.wait()
        if current is None or not revocation.allowed_on(current):
            return WriteOutcome(applied=False, session=current)
        updated = self._items[revocation.session_id] = revocation.apply_to(current)
        self.revoked.set()
        return WriteOutcome(applied=True, session=updated)


def test_the_boundary_check_catches_a_check_then_revoke_store() -> None:
    store = CheckThenWriteStore(Settings())
    rotated = rotated_session(store)
    store.refused_barrier = threading.Barrier(2 * PER_SIDE)
    store.revocation_barrier = threading.Barrier(PER_SIDE)  # the boundary presenters
    presented = present_previous_around_the_boundary(store, rotated)
    with pytest.raises(AssertionError):
        revoked_once_and_never_forked(store, rotated, presented)
    assert sum(isinstance(p.outcome, RefreshReuseRevoked) for p in presented) == PER_SIDE


# --- a replay racing the legitimate holder's rotation ------------------------------------------


@dataclass(frozen=True)
class Race:
    holder: Outcome  # the holder presenting the current token
    replay: Outcome  # someone presenting the previous one
    holder_new_jti: str


def replay_races_holder(store: SessionStore, rotated: Rotated, at: float) -> Race:
    holder_new_jti = new_jti()

    def present(previous: bool) -> Outcome:
        jti, generation = (rotated.previous_jti, 1) if previous else (rotated.current_jti, 2)
        try:
            return store.rotate(
                rotated.session_id, jti, generation, new_jti() if previous else holder_new_jti, at
            )
        except Exception as exc:
            return exc

    sides = iter([False, True])
    lock = threading.Lock()

    def one() -> tuple[bool, Outcome]:
        with lock:
            previous = next(sides)
        return previous, present(previous)

    outcomes = dict(run_at_once(2, one))
    return Race(holder=outcomes[False], replay=outcomes[True], holder_new_jti=holder_new_jti)


def after_the_window_the_session_ends_revoked(
    store: SessionStore, rotated: Rotated, race: Race
) -> None:
    assert isinstance(race.replay, RefreshReuseRevoked), repr(race.replay)
    stored = store.get_session(rotated.session_id, active_only=False)
    assert stored.revoked_reason == "refresh_reuse", "the rotation undid the revocation"
    if isinstance(race.holder, RotationResult):  # the holder's write landed first: its successor
        # is dead. (The replay is classified on the state its refused write saw: either.)
        assert (stored.current_jti, stored.generation) == (race.holder_new_jti, 3)
    else:  # the replay went first: the holder finds the session revoked
        assert isinstance(race.holder, SessionRevoked), repr(race.holder)
        assert race.replay.event.classification == "recent_previous"
        assert (stored.current_jti, stored.generation) == (rotated.current_jti, 2)


def inside_the_window_the_lineage_never_forks(
    store: SessionStore, rotated: Rotated, race: Race
) -> None:
    assert isinstance(race.holder, RotationResult), repr(race.holder)
    assert not race.holder.grace_replay
    stored = store.get_session(rotated.session_id, active_only=False)
    if isinstance(race.replay, RotationResult):
        # The replay went first: the successor it got is the holder's own current token.
        assert race.replay.grace_replay
        assert race.replay.jti == rotated.current_jti
        assert stored.status == "active"
    else:
        # The holder went first: the replayed token is two generations back now.
        assert isinstance(race.replay, RefreshReuseRevoked), repr(race.replay)
        assert race.replay.event.classification == "stale_lineage"
        assert stored.revoked_reason == "refresh_reuse"
    assert (stored.current_jti, stored.generation) == (race.holder_new_jti, 3)


@pytest.mark.transactions
def test_a_replay_after_the_window_racing_the_holders_rotation_always_ends_revoked(
    serializing_backend: Backend, store: SessionStore
) -> None:
    for _ in range(ROUNDS[serializing_backend.name]):
        rotated = rotated_session(store)
        race = replay_races_holder(store, rotated, BOUNDARY + 1)
        after_the_window_the_session_ends_revoked(store, rotated, race)


@pytest.mark.transactions
def test_a_replay_inside_the_window_racing_the_holders_rotation_never_forks(
    serializing_backend: Backend, store: SessionStore
) -> None:
    for _ in range(ROUNDS[serializing_backend.name]):
        rotated = rotated_session(store)
        race = replay_races_holder(store, rotated, INSIDE)
        inside_the_window_the_lineage_never_forks(store, rotated, race)


class RotationLandsLastStore(CheckThenWriteStore):
    """Both presentations read the active session; the holder's rotation, decided on that
    read, is written only after the replay's revocation landed."""

    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        if self.refused_barrier is None:  # setting up: the session's first rotation
            return super()._write_rotation(rotation)
        current = self._read(rotation.session_id)
        self.refused_barrier.wait()
        if current is None or not rotation.allowed_on(current):
            return WriteOutcome(applied=False, session=current)
        assert self.revoked.wait(timeout=30), "the replay never revoked"
        updated = self._items[rotation.session_id] = rotation.apply_to(current)
        return WriteOutcome(applied=True, session=updated)


def test_the_replay_check_catches_a_rotation_that_overwrites_a_revocation() -> None:
    store = RotationLandsLastStore(Settings())
    rotated = rotated_session(store)
    store.refused_barrier = threading.Barrier(2)
    race = replay_races_holder(store, rotated, BOUNDARY + 1)
    with pytest.raises(AssertionError, match="undid the revocation"):
        after_the_window_the_session_ends_revoked(store, rotated, race)
    assert store.get_session(rotated.session_id).generation == 3  # active again: resurrected
