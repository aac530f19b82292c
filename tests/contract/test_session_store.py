"""The session-store contract, run against every backend (memory, moto, dynalite).

Times come from the ManualClock (start 1_800_000_000.0); nothing sleeps.
"""

from __future__ import annotations

import math

import pytest

from tests.clock import ManualClock
from tokencore.errors import (
    InvalidRequest,
    RefreshReuseDetected,
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
)
from tokencore.sessions import (
    REASON_ADMIN,
    REASON_EVICTED,
    REASON_LOGOUT,
    REASON_REFRESH_REUSE,
    RefreshReuseRevoked,
    RotationResult,
    Session,
    SessionStore,
    new_jti,
)

from .conftest import Backend, RequestLog, settings_with

USER = "user-1"
OTHER_USER = "user-2"
GRACE = 30  # Settings().refresh_reuse_grace_seconds
IDLE = 604_800  # Settings().refresh_token_ttl_seconds
ABSOLUTE = 2_592_000  # Settings().session_max_age_seconds

Token = tuple[str, int]


def first_token(session: Session) -> Token:
    return session.current_jti, session.generation


def token_of(result: RotationResult) -> Token:
    return result.jti, result.generation


def refresh(store: SessionStore, session: Session, token: Token) -> RotationResult:
    return store.rotate(session.session_id, token[0], token[1], new_jti())


def successor(result: RotationResult) -> tuple[str, int, int]:
    return result.jti, result.generation, result.refresh_expires_at


def rotate_chain(
    store: SessionStore, clock: ManualClock, session: Session, generations: int
) -> list[Token]:
    """Rotate until ``generations`` tokens exist, an hour apart (far outside the grace window)."""
    tokens = [first_token(session)]
    while len(tokens) < generations:
        clock.advance(3600)
        tokens.append(token_of(refresh(store, session, tokens[-1])))
    return tokens


# --- Create and read ---------------------------------------------------------------------------


def test_login_creates_an_active_session_holding_its_first_refresh_token(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(
        USER,
        device_id="device-1",
        source_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        security_level=2,
    )

    now = clock.now()
    assert session.user_id == USER
    assert session.status == "active"
    assert session.generation == 1
    assert session.created_at == session.last_activity == now
    assert session.idle_expires_at == session.refresh_expires_at == math.floor(now) + IDLE
    assert session.absolute_expires_at == math.floor(now) + ABSOLUTE
    assert (session.device_id, session.source_ip) == ("device-1", "203.0.113.7")
    assert session.user_agent == "Mozilla/5.0 (X11; Linux x86_64)"
    assert session.security_level == 2
    assert session.previous_jti is None
    assert session.previous_rotated_at is None
    assert session.revoked_reason is None
    # What the backend stored reads back identically.
    assert store.get_session(session.session_id) == session


def test_every_session_gets_a_fresh_id_and_first_jti(store: SessionStore) -> None:
    sessions = [store.create_session(USER) for _ in range(5)]
    assert len({s.session_id for s in sessions}) == 5
    assert len({s.current_jti for s in sessions}) == 5


def test_optional_metadata_may_be_absent(store: SessionStore) -> None:
    session = store.create_session(USER, device_id="", user_agent=None)
    assert store.get_session(session.session_id) == session
    assert session.device_id is None
    assert session.user_agent is None


def test_a_device_id_that_is_too_long_is_refused_not_truncated(store: SessionStore) -> None:
    with pytest.raises(InvalidRequest):
        store.create_session(USER, device_id="d" * 129)
    assert store.list_sessions(USER) == []


@pytest.mark.transactions
def test_an_unknown_session_is_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        store.get_session("no-such-session")
    with pytest.raises(SessionNotFound):
        store.rotate("no-such-session", new_jti(), 1, new_jti())
    with pytest.raises(SessionNotFound):
        store.revoke("no-such-session")
    with pytest.raises(SessionNotFound):
        store.get_session("")  # malformed ids never reach the backend


def test_rotation_refuses_nonsense_from_the_caller(store: SessionStore) -> None:
    session = store.create_session(USER)
    jti, generation = first_token(session)
    with pytest.raises(ValueError, match="differ"):
        store.rotate(session.session_id, jti, generation, jti)
    with pytest.raises(ValueError, match="positive"):
        store.rotate(session.session_id, jti, 0, new_jti())
    assert store.get_session(session.session_id) == session


# --- Rotation ----------------------------------------------------------------------------------


def test_rotation_issues_the_successor_and_keeps_the_presented_token_as_previous(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    clock.advance(60.5)
    successor_jti = new_jti()

    result = store.rotate(session.session_id, session.current_jti, 1, successor_jti)

    now = clock.now()
    assert (result.jti, result.generation) == (successor_jti, 2)
    assert result.refresh_expires_at == math.floor(now) + IDLE
    assert result.grace_replay is False
    stored = store.get_session(session.session_id)
    assert result.session == stored
    assert (stored.current_jti, stored.generation) == (successor_jti, 2)
    assert (stored.previous_jti, stored.previous_generation) == (session.current_jti, 1)
    assert stored.previous_rotated_at == now
    assert stored.last_activity == now  # touched by the rotation itself
    assert stored.created_at == session.created_at
    assert stored.absolute_expires_at == session.absolute_expires_at


def test_rotation_uses_the_callers_now(store: SessionStore, clock: ManualClock) -> None:
    session = store.create_session(USER)
    when = clock.now() + 42.25
    result = store.rotate(session.session_id, session.current_jti, 1, new_jti(), now=when)
    assert result.session.previous_rotated_at == when
    assert result.refresh_expires_at == math.floor(when) + IDLE


def test_a_chain_of_rotations_over_many_generations(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    tokens = rotate_chain(store, clock, session, 12)

    assert [generation for _, generation in tokens] == list(range(1, 13))
    assert len({jti for jti, _ in tokens}) == 12
    stored = store.get_session(session.session_id)
    assert first_token(stored) == tokens[-1]
    assert (stored.previous_jti, stored.previous_generation) == tokens[-2]
    assert stored.refresh_expires_at == math.floor(clock.now()) + IDLE


# --- Lifetimes ---------------------------------------------------------------------------------


def test_each_rotation_extends_the_idle_lifetime_but_never_the_absolute_one(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(
        settings_with(refresh_token_ttl_seconds=600, session_max_age_seconds=1500)
    )
    session = store.create_session(USER)
    start = math.floor(clock.now())

    clock.advance(500)
    first = refresh(store, session, first_token(session))
    assert first.refresh_expires_at == start + 1100
    clock.advance(500)
    second = refresh(store, session, token_of(first))
    assert second.refresh_expires_at == start + 1500  # idle would be +1600: capped
    assert store.get_session(session.session_id).refresh_expires_at == start + 1500
    clock.advance(499)
    third = refresh(store, session, token_of(second))
    assert third.refresh_expires_at == start + 1500

    clock.set(start + 1500)
    with pytest.raises(SessionExpired):
        refresh(store, session, token_of(third))
    with pytest.raises(SessionExpired):
        store.get_session(session.session_id)


def test_a_session_idle_for_its_whole_lifetime_expires(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(refresh_token_ttl_seconds=600))
    session = store.create_session(USER)
    start = math.floor(clock.now())

    clock.set(start + 599.999)
    assert store.get_session(session.session_id) == session
    clock.set(start + 600)  # the deadline itself is past, like a JWT exp
    with pytest.raises(SessionExpired):
        store.get_session(session.session_id)
    with pytest.raises(SessionExpired):
        refresh(store, session, first_token(session))
    # Expiry is not revocation: nothing was written.
    assert store.get_session(session.session_id, active_only=False) == session


def test_a_stale_token_on_an_expired_session_is_expiry_not_reuse(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(refresh_token_ttl_seconds=600))
    session = store.create_session(USER)
    tokens = rotate_chain(store, clock, session, 1)
    clock.advance(60)
    refresh(store, session, tokens[0])
    clock.advance(600)

    with pytest.raises(SessionExpired):
        refresh(store, session, tokens[0])
    assert store.get_session(session.session_id, active_only=False).status == "active"


def test_an_item_past_its_expiry_but_still_stored_reads_as_expired(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(refresh_token_ttl_seconds=600))
    session = store.create_session(USER)
    clock.advance(3600)

    if backend.client is not None:  # TTL deletion is lazy: the item is still there
        item = backend.raw_item(session.session_id)
        assert item is not None
        assert int(item["expires_at"]["N"]) < clock.now()
    assert store.get_session(session.session_id, active_only=False).status == "active"
    with pytest.raises(SessionExpired):
        store.get_session(session.session_id)
    assert store.list_sessions(USER) == []
    assert store.revoke_all(USER) == 0


# --- Grace window ------------------------------------------------------------------------------


@pytest.mark.transactions
@pytest.mark.parametrize(
    ("offset", "inside"),
    [
        pytest.param(-1.0, True, id="before-rotation-clock-skew"),
        pytest.param(0.0, True, id="same-instant"),
        pytest.param(GRACE - 0.001, True, id="just-inside"),
        pytest.param(GRACE, False, id="exactly-at-boundary-is-outside"),
        pytest.param(GRACE + 0.001, False, id="just-outside"),
    ],
)
def test_grace_window_edges(
    store: SessionStore, clock: ManualClock, offset: float, inside: bool
) -> None:
    session = store.create_session(USER)
    clock.advance(10)
    rotated_at = clock.now()
    issued = refresh(store, session, first_token(session))

    clock.set(rotated_at + offset)
    if inside:
        replay = refresh(store, session, first_token(session))
        assert replay.grace_replay is True
        assert successor(replay) == successor(issued)
        assert store.get_session(session.session_id) == issued.session
    else:
        with pytest.raises(RefreshReuseRevoked) as caught:
            refresh(store, session, first_token(session))
        assert caught.value.classification == "recent_previous"
        revoked = store.get_session(session.session_id, active_only=False)
        assert revoked.status == "revoked"
        assert revoked.revoked_reason == REASON_REFRESH_REUSE


@pytest.mark.transactions
def test_a_grace_replay_repeats_the_same_successor_and_never_slides_the_window(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    rotated_at = clock.now()
    issued = refresh(store, session, first_token(session))

    for offset in (5, 15, 29.5):
        clock.set(rotated_at + offset)
        replay = refresh(store, session, first_token(session))
        assert successor(replay) == successor(issued)
        assert replay.grace_replay is True
    # Replays wrote nothing: rotation time and last activity are those of the rotation.
    assert store.get_session(session.session_id) == issued.session

    clock.set(rotated_at + GRACE)  # counted from the rotation, not from the last replay
    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, first_token(session))
    assert caught.value.classification == "recent_previous"


def test_the_successor_rotates_normally_after_grace_replays(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    issued = refresh(store, session, first_token(session))
    clock.advance(1)
    replay = refresh(store, session, first_token(session))
    assert token_of(replay) == token_of(issued)

    clock.advance(1)
    third = refresh(store, session, token_of(replay))
    assert third.generation == 3
    assert third.grace_replay is False


@pytest.mark.transactions
def test_the_token_before_the_previous_one_revokes_even_inside_the_window(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    second = refresh(store, session, first_token(session))
    clock.advance(1)
    refresh(store, session, token_of(second))
    clock.advance(1)

    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, first_token(session))
    assert caught.value.classification == "stale_lineage"


@pytest.mark.transactions
def test_a_grace_replay_after_the_successor_was_rotated_again_is_stale_lineage(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    issued = refresh(store, session, first_token(session))
    clock.advance(1)
    assert refresh(store, session, first_token(session)).grace_replay is True
    clock.advance(1)
    refresh(store, session, token_of(issued))  # the successor moves on
    clock.advance(1)

    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, first_token(session))
    assert caught.value.classification == "stale_lineage"
    with pytest.raises(SessionRevoked):
        refresh(store, session, token_of(issued))


@pytest.mark.transactions
def test_a_zero_grace_window_allows_no_replay_at_all(backend: Backend, clock: ManualClock) -> None:
    store = backend.store(settings_with(refresh_reuse_grace_seconds=0))
    session = store.create_session(USER)
    refresh(store, session, first_token(session))

    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, first_token(session))  # same instant
    assert caught.value.classification == "recent_previous"


@pytest.mark.transactions
def test_a_retried_rotation_whose_first_write_landed_is_its_own_success(
    backend: Backend, clock: ManualClock
) -> None:
    """botocore retries a write whose answer was lost; the retry's condition then fails on the
    state the first attempt wrote. The same call (the same new_jti, which only it knows) gets
    its successor, even without a grace window: our own lost answer is never reuse."""
    store = backend.store(settings_with(refresh_reuse_grace_seconds=0))
    session = store.create_session(USER)
    presented = first_token(session)
    mine = new_jti()
    landed = store.rotate(session.session_id, *presented, mine)
    clock.advance(1)

    retried = store.rotate(session.session_id, *presented, mine)
    assert successor(retried) == successor(landed)
    assert retried.grace_replay is False
    assert store.get_session(session.session_id).generation == landed.generation

    # Anyone else presenting the same token is a replay, as before.
    with pytest.raises(RefreshReuseRevoked):
        store.rotate(session.session_id, *presented, new_jti())


# --- Reuse -------------------------------------------------------------------------------------


@pytest.mark.transactions
def test_an_older_generation_revokes_the_session_and_reports_the_event(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER, device_id="device-1", source_ip="198.51.100.4")
    tokens = rotate_chain(store, clock, session, 4)
    clock.advance(10)

    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, tokens[1])

    error = caught.value
    assert isinstance(error, RefreshReuseDetected)
    assert error.code == "refresh_reuse_detected"
    assert error.classification == "stale_lineage"
    event = error.event
    assert (event.session_id, event.user_id) == (session.session_id, USER)
    assert (event.device_id, event.source_ip) == ("device-1", "198.51.100.4")
    assert (event.presented_generation, event.current_generation) == (2, 4)
    assert event.detected_at == clock.now()
    for jti, _ in tokens:  # safe to log
        assert jti not in repr(event)
        assert jti not in str(error)
    revoked = store.get_session(session.session_id, active_only=False)
    assert (revoked.status, revoked.revoked_reason) == ("revoked", REASON_REFRESH_REUSE)
    assert revoked.revoked_at == clock.now()
    with pytest.raises(SessionRevoked):
        refresh(store, session, tokens[-1])  # the thief's or the owner's: both are out


@pytest.mark.transactions
def test_the_previous_token_after_its_window_revokes_the_session(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    tokens = rotate_chain(store, clock, session, 2)
    clock.advance(GRACE + 60)

    with pytest.raises(RefreshReuseRevoked) as caught:
        refresh(store, session, tokens[0])
    assert caught.value.classification == "recent_previous"
    assert caught.value.event.presented_generation == 1
    with pytest.raises(SessionRevoked):
        store.get_session(session.session_id)


@pytest.mark.transactions
def test_a_replay_to_a_session_already_revoked_for_reuse_is_not_reported_twice(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    tokens = rotate_chain(store, clock, session, 3)
    with pytest.raises(RefreshReuseRevoked):
        refresh(store, session, tokens[0])
    first = store.get_session(session.session_id, active_only=False)
    clock.advance(5)

    for token in tokens:
        with pytest.raises(SessionRevoked) as caught:
            refresh(store, session, token)
        assert not isinstance(caught.value, RefreshReuseDetected)
    assert store.get_session(session.session_id, active_only=False) == first
    assert store.revoke(session.session_id) is False


@pytest.mark.transactions
def test_every_token_of_a_logged_out_session_is_refused(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    issued = refresh(store, session, first_token(session))
    store.revoke(session.session_id)
    clock.advance(1)

    for token in (token_of(issued), first_token(session)):  # current; previous in its window
        with pytest.raises(SessionRevoked):
            refresh(store, session, token)
    assert store.get_session(session.session_id, active_only=False).revoked_reason == (
        REASON_LOGOUT
    )


# --- Revocation --------------------------------------------------------------------------------


@pytest.mark.transactions
def test_revoke_one_session(store: SessionStore, clock: ManualClock) -> None:
    target = store.create_session(USER)
    bystander = store.create_session(USER)
    clock.advance(5)

    assert store.revoke(target.session_id) is True

    with pytest.raises(SessionRevoked):
        store.get_session(target.session_id)
    revoked = store.get_session(target.session_id, active_only=False)
    assert (revoked.revoked_reason, revoked.revoked_at) == (REASON_LOGOUT, clock.now())
    assert store.get_session(bystander.session_id) == bystander


@pytest.mark.transactions
def test_revoke_is_idempotent_and_keeps_the_first_reason(
    store: SessionStore, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    assert store.revoke(session.session_id, REASON_ADMIN) is True
    first = store.get_session(session.session_id, active_only=False)
    clock.advance(60)

    assert store.revoke(session.session_id, REASON_LOGOUT) is False
    assert store.revoke(session.session_id, REASON_REFRESH_REUSE) is False
    assert store.get_session(session.session_id, active_only=False) == first


@pytest.mark.transactions
def test_revoke_on_behalf_of_a_user_touches_only_that_users_session(
    store: SessionStore,
) -> None:
    session = store.create_session(USER)

    with pytest.raises(SessionNotFound):  # the same answer as for a session that does not exist
        store.revoke(session.session_id, user_id=OTHER_USER)
    assert store.get_session(session.session_id) == session
    assert store.revoke(session.session_id, user_id=USER) is True
    assert store.revoke(session.session_id, user_id=USER) is False
    with pytest.raises(SessionNotFound):
        store.revoke(session.session_id, user_id=OTHER_USER)


def test_revoke_refuses_a_reason_that_is_not_a_short_word(store: SessionStore) -> None:
    session = store.create_session(USER)
    with pytest.raises(ValueError, match="reason"):
        store.revoke(session.session_id, "Because I said so")
    assert store.get_session(session.session_id) == session


def seed_sessions(store: SessionStore, clock: ManualClock, count: int) -> list[Session]:
    """Store sessions as create_session does, minus its cap check: seeding 300 through the cap
    would read O(n^2) index items, and moto's index query costs most of a millisecond each."""
    sessions = []
    for _ in range(count):
        session = store.new_session(
            USER, device_id=None, source_ip=None, user_agent=None, security_level=1
        )
        assert store._insert(session).applied
        sessions.append(session)
        clock.advance(0.25)
    return sessions


@pytest.mark.transactions
def test_revoke_all_over_hundreds_of_sessions(backend: Backend, clock: ManualClock) -> None:
    store = backend.store(settings_with(max_sessions_per_user=1000))
    sessions = seed_sessions(store, clock, 300)
    already_revoked = store.create_session(USER)
    store.revoke(already_revoked.session_id)
    bystander = store.create_session(OTHER_USER)

    if backend.client is None:
        assert store.revoke_all(USER) == 300
    else:
        with RequestLog(backend.client) as log:
            assert store.revoke_all(USER) == 300
        assert log.operations.count("Query") > 1  # one page is not enough for 300 sessions
        assert log.operations.count("TransactWriteItems") == 300
    assert store.list_sessions(USER) == []
    for session in (sessions[0], sessions[150], sessions[-1]):
        revoked = store.get_session(session.session_id, active_only=False)
        assert revoked.revoked_reason == "revoke_all"
    assert store.get_session(already_revoked.session_id, active_only=False).revoked_reason == (
        REASON_LOGOUT
    )
    assert store.get_session(bystander.session_id) == bystander
    assert store.revoke_all(USER) == 0


# --- Listing and the cap -----------------------------------------------------------------------


@pytest.mark.transactions
def test_list_sessions_shows_only_active_unexpired_sessions_oldest_first(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(refresh_token_ttl_seconds=600))
    expiring = store.create_session(USER)
    clock.advance(300)
    oldest = store.create_session(USER, device_id="laptop")
    clock.advance(1)
    revoked = store.create_session(USER)
    clock.advance(1)
    newest = store.create_session(USER, device_id="phone")
    store.create_session(OTHER_USER)
    store.revoke(revoked.session_id)
    assert [s.session_id for s in store.list_sessions(USER)] == [
        expiring.session_id,
        oldest.session_id,
        newest.session_id,
    ]

    clock.advance(300)  # expiring's idle deadline has passed

    assert store.list_sessions(USER) == [oldest, newest]


@pytest.mark.transactions
def test_the_oldest_active_session_is_evicted_beyond_the_cap(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(max_sessions_per_user=3))
    sessions = []
    for _ in range(4):
        sessions.append(store.create_session(USER))
        clock.advance(1)

    evicted = store.get_session(sessions[0].session_id, active_only=False)
    assert (evicted.status, evicted.revoked_reason) == ("revoked", REASON_EVICTED)
    assert store.list_sessions(USER) == sessions[1:]
    with pytest.raises(SessionRevoked):
        refresh(store, sessions[0], first_token(sessions[0]))

    sessions.append(store.create_session(USER))
    assert [s.session_id for s in store.list_sessions(USER)] == [s.session_id for s in sessions[2:]]


@pytest.mark.transactions
def test_revoked_and_expired_sessions_do_not_count_towards_the_cap(
    backend: Backend, clock: ManualClock
) -> None:
    store = backend.store(settings_with(max_sessions_per_user=2, refresh_token_ttl_seconds=600))
    expired = store.create_session(USER)
    clock.advance(601)
    logged_out = store.create_session(USER)
    store.revoke(logged_out.session_id)
    clock.advance(1)
    kept = store.create_session(USER)
    clock.advance(1)
    newest = store.create_session(USER)

    assert store.list_sessions(USER) == [kept, newest]
    assert store.get_session(expired.session_id, active_only=False).revoked_reason is None
    assert store.get_session(logged_out.session_id, active_only=False).revoked_reason == (
        REASON_LOGOUT
    )
