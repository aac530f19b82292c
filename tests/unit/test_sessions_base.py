"""The session store's pure parts: ids, what a Session shows, create's retry rule."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.clock import ManualClock
from tokencore.config import Settings
from tokencore.errors import StoreConflict
from tokencore.sessions import (
    InMemorySessionStore,
    RotationResult,
    Session,
    new_jti,
    new_session_id,
)
from tokencore.sessions.base import Rotation, WriteOutcome

URL_SAFE_128_BITS = re.compile(r"[A-Za-z0-9_-]{22}")


@pytest.mark.parametrize("make", [new_session_id, new_jti])
def test_ids_are_128_random_bits_url_safe(make: object) -> None:
    assert callable(make)
    ids = {make() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(URL_SAFE_128_BITS.fullmatch(value) for value in ids)


def test_no_repr_shows_a_jti(clock: ManualClock) -> None:
    store = InMemorySessionStore(Settings(), clock)
    session = store.create_session("user-1")
    successor = new_jti()
    result = store.rotate(session.session_id, session.current_jti, 1, successor)
    rotation = Rotation(session.session_id, session.current_jti, 1, successor, 0.0, 0)

    for shown in (repr(result.session), repr(result), repr(rotation)):
        assert session.current_jti not in shown
        assert successor not in shown
    assert session.session_id in repr(result.session)


def test_refresh_expiry_is_the_idle_deadline_capped_by_the_absolute_one() -> None:
    session = Session(
        session_id="s",
        user_id="u",
        created_at=0.0,
        last_activity=0.0,
        idle_expires_at=100,
        absolute_expires_at=80,
        current_jti="j",
        generation=1,
    )
    assert session.refresh_expires_at == 80
    assert session.is_active(79.999)
    assert not session.is_active(80)
    assert RotationResult.of(session, grace_replay=False).refresh_expires_at == 80
    assert replace(session, idle_expires_at=60).refresh_expires_at == 60


class LandedTwice(InMemorySessionStore):
    """Answers like a retried PutItem whose first attempt landed: refused, on its own item."""

    def _insert(self, session: Session) -> WriteOutcome:
        super()._insert(session)
        return WriteOutcome(applied=False, session=session)


class Collides(InMemorySessionStore):
    """Answers like a PutItem that found someone else's session under the same id."""

    def _insert(self, session: Session) -> WriteOutcome:
        return WriteOutcome(applied=False, session=replace(session, user_id="someone-else"))


def test_a_create_whose_retry_finds_its_own_item_succeeded(clock: ManualClock) -> None:
    store = LandedTwice(Settings(), clock)
    session = store.create_session("user-1")
    assert store.get_session(session.session_id) == session


def test_a_create_that_finds_another_session_under_its_id_is_a_conflict(
    clock: ManualClock,
) -> None:
    with pytest.raises(StoreConflict):
        Collides(Settings(), clock).create_session("user-1")
