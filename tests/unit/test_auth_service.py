"""The login, refresh and logout flows over the in-memory backends (the stores themselves are
covered against DynamoDB by the contract suite)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tokencore.config import Settings
from tokencore.errors import (
    InvalidCredentials,
    KeyUnavailable,
    RateLimited,
    RefreshReuseDetected,
    SessionRevoked,
    StoreUnavailable,
    TokenRejected,
    UserDisabled,
)
from tokencore.keys import KeySet, LocalSigner, StaticKeySource, generate_key
from tokencore.keys.keyring import KeyRing
from tokencore.ratelimit import InMemoryRateLimiter
from tokencore.service import AuthService, LoginRequest
from tokencore.sessions import InMemorySessionStore
from tokencore.tokens import fingerprint_matches
from tokencore.users import InMemoryUserStore, RevokeAllSessions, UserService

PASSWORD = "correct horse battery staple"


@dataclass
class World:
    clock: ManualClock
    settings: Settings
    service: AuthService
    users: UserService
    sessions: InMemorySessionStore
    user_id: str

    def login(self, password: str = PASSWORD, **extra: str) -> object:
        return self.service.login(
            LoginRequest("alice", password, source_ip="198.51.100.7", **extra)
        )


def _ring(keys: KeySet, clock: ManualClock) -> KeyRing:
    source = StaticKeySource(keys.verification_keys())
    return KeyRing(source, clock, cache_ttl_seconds=300, refetch_min_interval_seconds=10)


@pytest.fixture
def make_world(clock: ManualClock) -> Callable[..., World]:
    def build(**env: str) -> World:
        settings = Settings.from_env({"TOKEN_ISSUER": "https://auth.example.com", **env})
        access = KeySet([generate_key(settings.access_token_alg)], "access")
        refresh = KeySet([generate_key("HS256")], "refresh")
        sessions = InMemorySessionStore(settings, clock)
        users = UserService(
            InMemoryUserStore(),
            RevokeAllSessions(sessions),
            clock,
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        user = users.create_user("alice", PASSWORD, email="alice@example.com", roles=["user"])
        service = AuthService(
            settings,
            users=users,
            sessions=sessions,
            rate_limiter=InMemoryRateLimiter(clock),
            access_signer=access.signer(),
            refresh_signer=refresh.signer(),
            access_keys=_ring(access, clock),
            refresh_keys=_ring(refresh, clock),
            clock=clock,
        )
        return World(clock, settings, service, users, sessions, user.user_id)

    return build


def test_login_issues_tokens_bound_to_a_new_session(make_world: Callable[..., World]) -> None:
    world = make_world()
    grant = world.service.login(
        LoginRequest("Alice", PASSWORD, source_ip="198.51.100.7", device_id="laptop-1")
    )
    claims = world.service.verify_access(grant.access_token)
    assert claims.subject == world.user_id
    assert claims.session_id == grant.session_id
    assert claims.roles == ("user",)
    assert claims.email == "alice@example.com"
    assert grant.expires_in == 900
    assert grant.fingerprint is not None
    assert claims.fingerprint_hash is not None
    assert fingerprint_matches(claims.fingerprint_hash, grant.fingerprint)
    session = world.sessions.get_session(grant.session_id)
    assert session.device_id == "laptop-1"
    assert "alice" not in repr(grant)
    assert grant.access_token not in repr(grant)


def test_wrong_password_creates_no_session(make_world: Callable[..., World]) -> None:
    world = make_world()
    with pytest.raises(InvalidCredentials):
        world.login("wrong")
    assert world.sessions.list_sessions(world.user_id) == []


def test_login_is_rate_limited_per_username(make_world: Callable[..., World]) -> None:
    world = make_world(LOGIN_RATE_LIMIT="2/60")
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            world.login("wrong")
    with pytest.raises(RateLimited) as limited:
        world.login()  # even the right password waits out the window
    assert 0 < limited.value.retry_after_seconds <= 60
    world.clock.advance(60)
    world.login()


class CountingHasher(PasswordHasher):
    """Counts Argon2 verifies: a refused attempt must cost none."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifies += 1
        return super().verify(hash, password)


def test_a_full_window_refuses_before_any_argon2_work(make_world: Callable[..., World]) -> None:
    world = make_world(LOGIN_IP_RATE_LIMIT="3/60")
    hasher = CountingHasher()
    world.users.passwords._hasher = hasher
    for password in ("wrong", "wrong", PASSWORD):  # successes count too
        with contextlib.suppress(InvalidCredentials):
            world.login(password)
    assert hasher.verifies == 3
    with pytest.raises(RateLimited) as limited:
        world.login()
    assert limited.value.scope == "login_ip"
    assert hasher.verifies == 3
    assert len(world.sessions.list_sessions(world.user_id)) == 1


def test_unknown_and_malformed_names_are_counted_like_known_ones(
    make_world: Callable[..., World],
) -> None:
    world = make_world(LOGIN_RATE_LIMIT="2/60")
    for name in ("nobody", "\u202enobody"):
        for _ in range(2):
            with pytest.raises(InvalidCredentials):
                world.service.login(LoginRequest(name, PASSWORD, source_ip="198.51.100.7"))
        with pytest.raises(RateLimited) as limited:
            world.service.login(LoginRequest(name, PASSWORD, source_ip="198.51.100.7"))
        assert limited.value.scope == "login_user"


def test_refresh_rotates_and_the_old_token_is_single_use(make_world: Callable[..., World]) -> None:
    world = make_world(REFRESH_REUSE_GRACE_SECONDS="10")
    first = world.service.login(LoginRequest("alice", PASSWORD))
    world.clock.advance(5)
    second = world.service.refresh(first.refresh_token, fingerprint=first.fingerprint)
    assert second.refresh_token != first.refresh_token
    assert second.session_id == first.session_id
    assert second.fingerprint == first.fingerprint  # one cookie jar, one fingerprint
    # Inside the grace window the previous token gets the identical successor, not a branch.
    world.clock.advance(3)
    replay = world.service.refresh(first.refresh_token)
    assert replay.grace_replay
    assert replay.refresh_token == second.refresh_token
    # After the window the same replay is theft: the whole session is revoked.
    world.clock.advance(10)
    with pytest.raises(RefreshReuseDetected):
        world.service.refresh(first.refresh_token)
    with pytest.raises(SessionRevoked):
        world.service.refresh(second.refresh_token)


def test_an_access_token_is_not_a_refresh_token(make_world: Callable[..., World]) -> None:
    world = make_world()
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    with pytest.raises(TokenRejected):
        world.service.refresh(grant.access_token)
    with pytest.raises(TokenRejected):
        world.service.verify_access(grant.refresh_token)


def test_refresh_rereads_the_user(make_world: Callable[..., World]) -> None:
    world = make_world()
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    world.users.set_roles(world.user_id, ["user", "admin"])
    refreshed = world.service.refresh(grant.refresh_token)
    assert set(world.service.verify_access(refreshed.access_token).roles) == {"user", "admin"}
    world.users.disable_user(world.user_id)
    with pytest.raises((UserDisabled, SessionRevoked)):
        world.service.refresh(refreshed.refresh_token)


def test_a_password_change_ends_older_sessions(make_world: Callable[..., World]) -> None:
    world = make_world()
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    world.clock.advance(1)
    world.users.change_password(world.user_id, "a new and better passphrase")
    with pytest.raises(SessionRevoked):
        world.service.refresh(grant.refresh_token)


def test_revoke_all_ends_a_session_the_index_did_not_show(
    make_world: Callable[..., World],
) -> None:
    """The bulk revocation walks an eventually consistent index; a session it missed (here:
    the marker written, the bulk step never reached it) is refused at its next refresh."""
    world = make_world()
    missed = world.service.login(LoginRequest("alice", PASSWORD))
    world.clock.advance(1)
    world.users.store.mark_sessions_revoked(world.user_id, world.clock.now())
    world.clock.advance(1)
    after = world.service.login(LoginRequest("alice", PASSWORD))

    with pytest.raises(SessionRevoked):
        world.service.refresh(missed.refresh_token)
    revoked = world.sessions.get_session(missed.session_id, active_only=False)
    assert revoked.revoked_reason == "revoke_all"
    world.service.refresh(after.refresh_token)  # a session created afterwards is untouched


def test_revoke_all_sessions_writes_the_marker_then_revokes(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    grants = [world.service.login(LoginRequest("alice", PASSWORD)) for _ in range(3)]
    world.clock.advance(1)
    assert world.users.revoke_all_sessions(world.user_id, "admin") == 3
    assert world.users.get_user(world.user_id).sessions_revoked_at == world.clock.now()
    for grant in grants:
        with pytest.raises(SessionRevoked):
            world.service.refresh(grant.refresh_token)
    # The marker never moves back (a container whose clock lags cannot un-revoke anything).
    world.users.store.mark_sessions_revoked(world.user_id, world.clock.now() - 60)
    assert world.users.get_user(world.user_id).sessions_revoked_at == world.clock.now()


def test_refresh_is_rate_limited_per_user(make_world: Callable[..., World]) -> None:
    world = make_world(REFRESH_RATE_LIMIT="2/60")
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    grant = world.service.refresh(grant.refresh_token)
    grant = world.service.refresh(grant.refresh_token)
    with pytest.raises(RateLimited):
        world.service.refresh(grant.refresh_token)
    world.clock.advance(60)
    world.service.refresh(grant.refresh_token)  # the limited attempt rotated nothing


def test_logout_is_idempotent_and_ignores_forged_tokens(make_world: Callable[..., World]) -> None:
    world = make_world()
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    forged = grant.refresh_token[:-4] + (
        "AAAA" if not grant.refresh_token.endswith("AAAA") else "BBBB"
    )
    assert world.service.logout(refresh_token=forged) is False
    assert world.sessions.get_session(grant.session_id).is_active(world.clock.now())
    assert (
        world.service.logout(access_token=grant.access_token, fingerprint=grant.fingerprint) is True
    )
    assert world.service.logout(refresh_token=grant.refresh_token) is False
    with pytest.raises(SessionRevoked):
        world.service.refresh(grant.refresh_token)


def test_a_bearer_alone_cannot_log_out_a_fingerprint_bound_session(
    make_world: Callable[..., World],
) -> None:
    """A copied access token without its fingerprint cookie names no session at logout, as it
    passes no authorizer: the thief cannot end the owner's session."""
    world = make_world()
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    assert grant.fingerprint is not None
    for wrong in (None, "", "x" * 43, grant.fingerprint[:-1] + "A"):
        if wrong == grant.fingerprint:
            continue
        assert world.service.logout(access_token=grant.access_token, fingerprint=wrong) is False
    assert world.sessions.get_session(grant.session_id).is_active(world.clock.now())
    assert world.service.logout(access_token=grant.access_token, fingerprint=grant.fingerprint)


def test_without_binding_a_bearer_alone_logs_out(make_world: Callable[..., World]) -> None:
    world = make_world(FINGERPRINT_BINDING="false")
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    assert grant.fingerprint is None
    assert world.service.logout(access_token=grant.access_token) is True


def test_no_token_without_its_session_when_signing_fails(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    class BrokenSigner:
        kid = "broken"
        alg = "RS256"

        def sign(self, signing_input: bytes) -> bytes:
            raise KeyUnavailable("kms is down")

    world.service._access_signer = BrokenSigner()
    with pytest.raises(KeyUnavailable):
        world.login()
    # The session written before signing failed is revoked, not left active.
    assert world.sessions.list_sessions(world.user_id) == []


def test_a_session_write_whose_answers_were_lost_is_ended_not_left_counting(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    original = world.sessions.insert_new

    def landed_then_lost(session: Any) -> None:
        original(session)  # the write lands; every answer to it is lost
        raise StoreUnavailable("injected")

    world.sessions.insert_new = landed_then_lost  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        world.login()
    # Nobody holds its tokens: it must not stay active (and count against the cap).
    assert world.sessions.list_sessions(world.user_id) == []


def test_a_session_write_that_never_landed_leaves_nothing_and_answers_the_fault(
    make_world: Callable[..., World],
) -> None:
    world = make_world()

    def failed(session: Any) -> None:
        raise StoreUnavailable("injected")

    world.sessions.insert_new = failed  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        world.login()
    assert world.sessions.list_sessions(world.user_id) == []


def test_unexpected_signer_errors_become_faults(make_world: Callable[..., World]) -> None:
    world = make_world()
    signer = LocalSigner(generate_key("RS256"))

    class Exploding:
        kid = signer.kid
        alg = signer.alg

        def sign(self, signing_input: bytes) -> bytes:
            raise RuntimeError("boom")

    world.service._access_signer = Exploding()
    with pytest.raises(KeyUnavailable):
        world.login()


def test_high_security_sessions_carry_acr(make_world: Callable[..., World]) -> None:
    world = make_world(FINGERPRINT_BINDING="false")
    grant = world.service.login(LoginRequest("alice", PASSWORD))
    claims = world.service.verify_access(grant.access_token)
    assert claims.security_level is None
    assert claims.fingerprint_hash is None
    assert grant.fingerprint is None


def test_refresh_reuse_is_a_security_event_with_hashed_ids(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(REFRESH_REUSE_GRACE_SECONDS="0")
    first = world.service.login(LoginRequest("alice", PASSWORD))
    world.service.refresh(first.refresh_token)
    with caplog.at_level("WARNING", logger="tokencore.audit"), pytest.raises(RefreshReuseDetected):
        world.service.refresh(first.refresh_token)
    events = [r for r in caplog.records if getattr(r, "security_event", None) == "refresh_reuse"]
    assert len(events) == 1
    event = events[0]
    assert event.classification == "recent_previous"  # type: ignore[attr-defined]
    assert len(event.session_id_hash) == 16  # type: ignore[attr-defined]
    text = caplog.text + repr(event.__dict__)
    for secret in (first.session_id, world.user_id, first.refresh_token, first.access_token):
        assert secret not in text
