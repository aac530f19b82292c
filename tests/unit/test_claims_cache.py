"""The claims cache: what it skips (verification of a string verified before) and what it never
skips (binding, policy, session checks), and everything that bounds an entry: the token's exp,
its age, the key ring, the clock, the size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ec

from tests.clock import ManualClock
from tokencore import authz
from tokencore.authz import Authorizer, AuthzRequest
from tokencore.claimscache import ClaimsCache
from tokencore.config import Settings
from tokencore.errors import FingerprintMismatch, KeyUnavailable, SessionRevoked, UnknownKey
from tokencore.jose.codec import b64url_decode, b64url_encode
from tokencore.keys import KeyRing, KeySet, StaticKeySource, generate_key
from tokencore.keys.model import VerificationKey
from tokencore.policy import Policy
from tokencore.sessioncheck import SeparateReads
from tokencore.sessions import InMemorySessionStore
from tokencore.tokens import (
    AccessClaims,
    VerifyOptions,
    mint_access_token,
    new_fingerprint,
    new_token_id,
    verify_access_token,
    verify_access_token_and_key,
)
from tokencore.users import InMemoryUserStore, User

ISSUER = "https://issuer.example"
AUDIENCE = "api"
LEEWAY = 30
TTL = 900


class FlakySource:
    """A key source that serves ``keys`` until told to fail."""

    def __init__(self, keys: list[VerificationKey]) -> None:
        self.keys = keys
        self.failing = False

    def load_verification_keys(self) -> list[VerificationKey]:
        if self.failing:
            raise KeyUnavailable("source is down")
        return list(self.keys)


class World:
    def __init__(self, alg: str = "RS256", *, max_entries: int = 1024) -> None:
        self.clock = ManualClock()
        self.key_set = KeySet([generate_key(alg)], "access")
        self.source = FlakySource(self.key_set.verification_keys())
        self.ring = KeyRing(
            self.source, self.clock, cache_ttl_seconds=300, refetch_min_interval_seconds=0
        )
        self.settings = replace(
            Settings(),
            token_issuer=ISSUER,
            token_audience=AUDIENCE,
            clock_skew_leeway_seconds=LEEWAY,
            session_check_sample_rate=0.0,
        )
        self.sessions = InMemorySessionStore(self.settings, self.clock)
        self.users = InMemoryUserStore()
        self.users.create(
            User(
                user_id="usr_1",
                username="usr1",
                normalized_username="usr1",
                email=None,
                password_hash=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x"),
                roles=("user",),
                disabled=False,
                password_changed_at=self.clock.now() - 1,
                created_at=self.clock.now() - 1,
            )
        )
        self.reader = SeparateReads(self.sessions, self.users)
        self.cache = ClaimsCache(max_entries=max_entries, max_age_seconds=60)
        self.authorizer = Authorizer(
            keys=self.ring,
            options=VerifyOptions.for_access(self.settings),
            policy=Policy(self.settings),
            sessions=lambda: self.reader,
            sensitive_routes=self.settings.sensitive_routes,
            clock=self.clock,
            claims_cache=self.cache,
        )
        self.fingerprint, self.fingerprint_hash = new_fingerprint()
        self.session = self.sessions.create_session("usr_1")

    def token(self, *, ttl: int = TTL, roles: tuple[str, ...] = ("user",)) -> str:
        issued_at = int(self.clock.now())
        claims = AccessClaims(
            issuer=ISSUER,
            audience=AUDIENCE,
            subject="usr_1",
            session_id=self.session.session_id,
            token_id=new_token_id(),
            roles=roles,
            issued_at=issued_at,
            expires_at=issued_at + ttl,
            fingerprint_hash=self.fingerprint_hash,
        )
        return mint_access_token(self.key_set.signer(), claims).token

    def request(
        self, token: str, *, path: str = "/me", method: str = "GET", **extra: Any
    ) -> AuthzRequest:
        values: dict[str, Any] = {"fingerprint": self.fingerprint, **extra}
        return AuthzRequest(f"Bearer {token}", method, path, **values)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full verification the authorizer runs (the cache's misses)."""
    seen: list[str] = []
    original: Callable[..., Any] = verify_access_token_and_key

    def counting(token: str, *args: Any) -> Any:
        seen.append(token)
        return original(token, *args)

    monkeypatch.setattr(authz, "verify_access_token_and_key", counting)
    return seen


# --- what is skipped --------------------------------------------------------------------------


def test_a_token_seen_before_is_not_verified_again(world: World, verifications: list[str]) -> None:
    token = world.token()
    first = world.authorizer.authorize(world.request(token))
    second = world.authorizer.authorize(world.request(token))
    assert second.claims == first.claims
    assert verifications == [token]
    assert (world.cache.hits, world.cache.misses) == (1, 1)


def test_the_key_is_the_exact_string(world: World, verifications: list[str]) -> None:
    token = world.token()
    world.authorizer.authorize(world.request(token))
    other = world.token()  # same claims but the jti and the signature
    world.authorizer.authorize(world.request(other))
    assert verifications == [token, other]
    assert len(world.cache) == 2


def test_an_es256_high_s_twin_is_an_entry_of_its_own() -> None:
    world = World("ES256")
    token = world.token()
    head, payload, signature = token.split(".")
    raw = b64url_decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = f"{head}.{payload}." + b64url_encode(
        r.to_bytes(32, "big") + (order - s).to_bytes(32, "big")
    )
    assert twin != token
    (key,) = world.key_set.verification_keys()
    assert isinstance(key.key, ec.EllipticCurvePublicKey)
    world.authorizer.authorize(world.request(token))
    world.authorizer.authorize(world.request(twin))
    assert len(world.cache) == 2  # harmless: both verified, each cached under its own string


# --- what is never skipped ----------------------------------------------------------------------


def test_the_fingerprint_is_checked_on_every_hit(world: World) -> None:
    token = world.token()
    world.authorizer.authorize(world.request(token))
    with pytest.raises(FingerprintMismatch):
        world.authorizer.authorize(world.request(token, fingerprint="another-cookie"))
    assert world.cache.hits == 1


def test_the_route_policy_is_applied_on_every_hit(world: World) -> None:
    token = world.token()
    world.authorizer.authorize(world.request(token))
    with pytest.raises(authz.RouteForbidden):
        world.authorizer.authorize(
            world.request(token, path="/admin/users/x/revoke", method="POST")
        )


def test_a_sensitive_route_reads_the_session_on_every_hit(world: World) -> None:
    token = world.token()
    sensitive = world.request(token, path="/auth/sessions/revoke-all", method="POST")
    assert world.authorizer.authorize(sensitive).session_checked
    world.sessions.revoke(world.session.session_id, "logout")
    with pytest.raises(SessionRevoked):
        world.authorizer.authorize(sensitive)
    assert world.cache.hits == 1  # the claims came from the cache; the session did not


def test_a_forged_token_is_never_cached(world: World) -> None:
    token = world.token()
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(Exception, match="signature"):
            world.authorizer.authorize(world.request(forged))
    assert len(world.cache) == 0


# --- what bounds an entry -------------------------------------------------------------------------


def test_an_entry_never_outlives_the_tokens_exp(world: World, verifications: list[str]) -> None:
    token = world.token(ttl=45)  # shorter than the cache's own 60 s
    world.authorizer.authorize(world.request(token))
    world.clock.advance(44)
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 1
    world.clock.advance(1)  # at exp: the cache lets go, verify applies its leeway
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 2
    world.clock.advance(LEEWAY)  # exp + leeway: expired, whatever was cached
    with pytest.raises(Exception, match="expired"):
        world.authorizer.authorize(world.request(token))


def test_an_entry_is_verified_again_after_its_maximum_age(
    world: World, verifications: list[str]
) -> None:
    token = world.token()
    world.authorizer.authorize(world.request(token))
    world.clock.advance(59)
    world.authorizer.authorize(world.request(token))
    world.clock.advance(1)
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 2


def test_an_emergency_key_revocation_reaches_cached_tokens(world: World) -> None:
    world.cache.max_age_seconds = 600  # longer than the ring's TTL: the key check must act
    token = world.token()
    world.authorizer.authorize(world.request(token))
    replacement = KeySet([generate_key("RS256")], "access").verification_keys()
    world.source.keys = replacement
    world.clock.advance(300)  # the ring's TTL: it refetches and the old kid is gone
    with pytest.raises(UnknownKey):
        world.authorizer.authorize(world.request(token))
    assert len(world.cache) == 0


def test_a_ring_that_cannot_vouch_for_its_keys_denies_cached_tokens(world: World) -> None:
    world.cache.max_age_seconds = 600
    token = world.token()
    world.authorizer.authorize(world.request(token))
    world.source.failing = True
    world.clock.advance(300)  # expired ring, failing source: fail closed, cache or not
    with pytest.raises(KeyUnavailable):
        world.authorizer.authorize(world.request(token))


def test_an_equal_key_after_a_refetch_keeps_serving(world: World, verifications: list[str]) -> None:
    token = world.token(ttl=TTL)
    world.cache.max_age_seconds = 600
    world.authorizer.authorize(world.request(token))
    world.clock.advance(300)  # the ring refetches: new objects, the same key
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 1


def test_a_clock_that_goes_back_misses(world: World, verifications: list[str]) -> None:
    token = world.token()
    world.authorizer.authorize(world.request(token))
    world.clock.advance(-1)
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 2


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    world = World(max_entries=3)
    tokens = [world.token() for _ in range(4)]
    for token in tokens[:3]:
        world.authorizer.authorize(world.request(token))
    world.authorizer.authorize(world.request(tokens[0]))  # the first is now the most recent
    world.authorizer.authorize(world.request(tokens[3]))  # evicts tokens[1]
    assert len(world.cache) == 3
    hits = world.cache.hits
    world.authorizer.authorize(world.request(tokens[0]))
    assert world.cache.hits == hits + 1
    world.authorizer.authorize(world.request(tokens[1]))
    assert world.cache.hits == hits + 1  # evicted: verified again


def test_a_cache_of_size_zero_stores_nothing(verifications: list[str]) -> None:
    world = World(max_entries=0)
    token = world.token()
    world.authorizer.authorize(world.request(token))
    world.authorizer.authorize(world.request(token))
    assert len(verifications) == 2
    assert len(world.cache) == 0


def test_the_cache_answers_what_verify_answers(world: World) -> None:
    token = world.token()
    options = VerifyOptions.for_access(world.settings)
    direct = verify_access_token(token, world.ring, options, world.clock.now())
    world.authorizer.authorize(world.request(token))
    assert world.authorizer.verified_claims(token) == direct


def test_the_runtime_bounds_the_cache_by_the_key_rings_ttl() -> None:
    from tokencore.runtime import Parts, Runtime

    settings = replace(Settings(), jwks_cache_ttl_seconds=20)
    clock = ManualClock()
    keys = KeyRing(StaticKeySource([]), clock, cache_ttl_seconds=20, refetch_min_interval_seconds=0)
    authorizer = Runtime(settings, clock, Parts(access_keys=keys)).authorizer
    assert authorizer.claims_cache is not None
    assert authorizer.claims_cache.max_age_seconds == 20
    assert authorizer.claims_cache.max_entries == 1024


def test_the_authorizer_states_the_session_stores_device_id_bound() -> None:
    from tokencore.sessions.base import DEVICE_ID_MAX_CHARS

    assert authz.DEVICE_ID_MAX_CHARS == DEVICE_ID_MAX_CHARS
