"""Warm containers ride through key rotation and revocation (the functional stack in moto, one
Runtime as one warm container, the clock moved by hand).

- the issuer keeps signing with the key it read, at most JWKS_CACHE_TTL_SECONDS after a
  rotation, and those tokens verify (the retired key is still published);
- the authorizer knows a next key before it signs; an unknown kid costs one rate-limited
  refetch, then verifies;
- old tokens verify until they expire, and a retired key is removed only after that;
- refresh tokens of the previous refresh key keep working until they are rotated;
- an emergency revocation: the key leaves the JWKS endpoint within seconds, and every
  authorizer refuses its tokens within JWKS_CACHE_TTL_SECONDS;
- the JWKS response's cache lifetime fits the overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from functions.authorizer import app as authorizer
from tests.awsspy import record_aws_calls
from tests.functional.conftest import CHEAP_HASHER, Stack, load_event
from tests.functional.test_http_edge import send
from tokencore.errors import ExpiredToken, KeyUnavailable, TokenRejected, UnknownKey
from tokencore.jose.codec import b64url_decode
from tokencore.keys import KeyRing, StaticKeySource
from tokencore.keys.lifecycle import LifecyclePolicy
from tokencore.ops.publishing import read_published_keys
from tokencore.ops.rotation import SecretsManagerRotation
from tokencore.runtime import JWKS_ENDPOINT_CACHE_SECONDS, Parts, Runtime, set_runtime
from tokencore.service import TokenGrant

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

CACHE = 300  # JWKS_CACHE_TTL_SECONDS
TTL = 900  # ACCESS_TOKEN_TTL_SECONDS
LEEWAY = 30  # CLOCK_SKEW_LEEWAY_SECONDS


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "tokencore-authorizer"
    aws_request_id: str = "5e0f8c1a-0000-4000-8000-0000000000aa"


@pytest.fixture
def rotation(stack: Stack) -> SecretsManagerRotation:
    return SecretsManagerRotation(
        stack.settings,
        secretsmanager=boto3.client("secretsmanager"),
        ssm=boto3.client("ssm"),
        clock=stack.clock,
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS call, as ``service:Operation``."""
    seen: list[str] = []
    record_aws_calls(monkeypatch, seen)
    return seen


def kid_of(token: str) -> str:
    import json

    header = json.loads(b64url_decode(token.split(".")[0]))
    return str(header["kid"])


def authorized(stack: Stack, grant: TokenGrant, token: str | None = None) -> bool:
    """The real authorizer (HTTP API event) for ``token`` (default: the grant's own)."""
    event = load_event(
        "authorizer/http-valid.json",
        access_token=token or grant.access_token,
        fingerprint=grant.fingerprint or "",
        session_id=grant.session_id,
        device_id="",
    )
    answer = authorizer.lambda_handler(event, FakeContext())
    return bool(answer["isAuthorized"])


def ready_to_promote(stack: Stack, rotation: SecretsManagerRotation) -> None:
    """The stack's set has no next key: one rotation publishes one, and a cache TTL later the
    next rotation may promote it."""
    rotation.rotate("access")
    rotation.rotate("refresh")
    stack.clock.advance(CACHE)


# --- rotation while users are active -------------------------------------------------------


def test_a_warm_issuer_signs_with_the_old_key_at_most_a_cache_ttl_and_nobody_is_denied(
    stack: Stack, rotation: SecretsManagerRotation
) -> None:
    ready_to_promote(stack, rotation)
    before = stack.login()  # the issuer container reads the set now
    old_kid = kid_of(before.access_token)
    assert authorized(stack, before)

    report = rotation.rotate("access")
    assert report["promoted"] is True
    new_kid = report["active_kid"]
    assert new_kid != old_kid

    # Within the signer's cache TTL a warm container still signs with the retired key: its
    # tokens verify, because the retired key stays published.
    stack.clock.advance(CACHE - 1)
    stale = stack.login()
    assert kid_of(stale.access_token) == old_kid
    assert authorized(stack, stale)
    assert authorized(stack, before)

    # Then it reads the set again and signs with the new key, which verifiers already had.
    stack.clock.advance(1)
    fresh = stack.login()
    assert kid_of(fresh.access_token) == new_kid
    assert authorized(stack, fresh)
    assert authorized(stack, stale)  # old tokens: valid until they expire

    # The last token the old key signed is accepted until it expires (plus the leeway), and
    # then refused for its expiry alone.
    expires_at = stack.runtime.auth.verify_access(stale.access_token).expires_at
    assert expires_at == stack.clock.now() - 1 + TTL
    stack.clock.set(expires_at + LEEWAY - 1)
    assert authorized(stack, stale)
    stack.clock.set(expires_at + LEEWAY + 1)
    with pytest.raises(ExpiredToken):
        stack.runtime.auth.verify_access(stale.access_token)

    # Only now may a rotation remove the retired key: every token it signed has expired.
    stack.clock.advance(CACHE)
    pruned = rotation.rotate("access", force=True)
    assert old_kid in pruned["pruned_kids"]
    assert authorized(stack, stack.login())


def test_the_authorizer_knows_the_next_key_before_it_signs(
    stack: Stack, rotation: SecretsManagerRotation, calls: list[str]
) -> None:
    """No unknown kid at all in a scheduled rotation: the key was published a cache TTL (a
    whole period, really) before it signs, so verifiers have it without a refetch."""
    grant = stack.login()
    assert authorized(stack, grant)  # the authorizer's ring is loaded now
    rotation.rotate("access")  # publishes the next key
    stack.clock.advance(CACHE)
    assert authorized(stack, grant)  # the ring expired and was refreshed: it has the next key
    rotation.rotate("access")  # promotes it; the issuer's set (read a TTL ago) has expired
    new = stack.login()
    assert kid_of(new.access_token) != kid_of(grant.access_token)
    calls.clear()
    assert authorized(stack, new)
    assert "ssm:GetParameter" not in calls  # verified from the cache: the key was known


def test_an_unknown_kid_costs_one_rate_limited_refetch_then_verifies(
    stack: Stack, rotation: SecretsManagerRotation, calls: list[str]
) -> None:
    """A key promoted sooner than the cache TTL (--force, or a verifier whose cache predates
    the publication): the first token with the new kid makes the authorizer refetch once."""
    grant = stack.login()
    assert authorized(stack, grant)  # loads the ring
    stack.clock.advance(stack.settings.jwks_refetch_min_interval_seconds)
    rotation.rotate("access")
    rotation.rotate("access", force=True)
    # A cold issuer container (the suite's Argon2 parameters: the stack's parts).
    fresh = Runtime(stack.settings, stack.clock, Parts(password_hasher=CHEAP_HASHER))
    set_runtime(fresh)
    new = fresh.auth.login(_login_request())
    set_runtime(stack.runtime)
    calls.clear()
    for _ in range(5):
        assert authorized(stack, new)
        assert authorized(stack, grant)  # the old key is still published
    assert calls.count("ssm:GetParameter") == 1


def _login_request() -> Any:
    from tests.functional.conftest import USER_PASSWORD
    from tokencore.service import LoginRequest

    return LoginRequest("alice", USER_PASSWORD)


def test_refresh_tokens_of_the_previous_refresh_key_keep_working(
    stack: Stack, rotation: SecretsManagerRotation
) -> None:
    ready_to_promote(stack, rotation)
    grant = stack.login()
    old_kid = kid_of(grant.refresh_token)
    report = rotation.rotate("refresh")
    assert report["promoted"] is True
    stack.clock.advance(CACHE)  # the refresher's set expires: it signs with the new key

    rotated = stack.runtime.auth.refresh(grant.refresh_token, fingerprint=grant.fingerprint)

    assert kid_of(rotated.refresh_token) == report["active_kid"] != old_kid
    again = stack.runtime.auth.refresh(rotated.refresh_token, fingerprint=grant.fingerprint)
    assert again.session_id == grant.session_id


# --- emergency revocation --------------------------------------------------------------------


def test_a_revoked_access_key_is_refused_everywhere_within_the_cache_ttl(
    stack: Stack, rotation: SecretsManagerRotation
) -> None:
    ready_to_promote(stack, rotation)
    grant = stack.login()
    victim = kid_of(grant.access_token)
    assert authorized(stack, grant)
    assert victim in _jwks_kids()

    report = rotation.revoke(victim, "access")
    assert report["replacement_was_published"] is True

    # The JWKS endpoint drops it within seconds (its own short cache); the parameter at once.
    published = read_published_keys(boto3.client("ssm"), stack.settings.public_jwks_parameter)
    assert victim not in {entry.kid for entry in published}
    stack.clock.advance(JWKS_ENDPOINT_CACHE_SECONDS)
    assert victim not in _jwks_kids()
    # Authorizers that cached it refuse it once their cache expires: the documented bound.
    stack.clock.advance(CACHE - JWKS_ENDPOINT_CACHE_SECONDS - 1)
    assert authorized(stack, grant)
    stack.clock.advance(1)
    assert not authorized(stack, grant)
    with pytest.raises(UnknownKey):
        stack.runtime.auth.verify_access(grant.access_token)
    # The issuer has stopped signing with it too, and its new tokens are accepted.
    new = stack.login()
    assert kid_of(new.access_token) == report["active_kid"] != victim
    assert authorized(stack, new)


def test_a_revoked_refresh_key_is_refused_within_the_cache_ttl(
    stack: Stack, rotation: SecretsManagerRotation
) -> None:
    grant = stack.login()
    victim = kid_of(grant.refresh_token)
    rotation.revoke(victim, "refresh")
    stack.clock.advance(CACHE)
    with pytest.raises(TokenRejected):
        stack.runtime.auth.refresh(grant.refresh_token, fingerprint=grant.fingerprint)
    # Logging in again works, with the new refresh key.
    assert kid_of(stack.login().refresh_token) != victim


def _jwks_kids() -> set[str]:
    result = send("issuer/jwks.json")
    assert result.status == 200
    return {key["kid"] for key in result.json()["keys"]}


# --- the signer's cache --------------------------------------------------------------------------


def test_the_signer_reads_its_set_once_per_cache_ttl_and_fails_closed(
    stack: Stack, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        stack.login()
    reads = calls.count("secretsmanager:GetSecretValue")
    assert reads == 2  # the access set and the refresh set, once each
    stack.clock.advance(CACHE - 1)
    stack.login()
    assert calls.count("secretsmanager:GetSecretValue") == reads
    stack.clock.advance(1)
    stack.login()
    assert calls.count("secretsmanager:GetSecretValue") == reads + 2

    # Past its age, a set that cannot be read again is not served stale: 503, then recovery.
    stack.clock.advance(CACHE)
    original = BaseClient._make_api_call

    def throttled(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "GetSecretValue":
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException"}}, operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttled)
    with pytest.raises(KeyUnavailable):
        stack.login()
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    assert stack.login().access_token


# --- the JWKS response ---------------------------------------------------------------------


def test_the_jwks_cache_lifetime_fits_the_overlap(
    stack: Stack, rotation: SecretsManagerRotation
) -> None:
    """A verifier that honours max-age has a new key before it signs (max-age <= the time a
    next key waits) and drops a revoked one within the revocation bound (max-age <= the
    authorizers' cache TTL); a retired key outlives any cached copy of the document."""
    rotation.rotate("access")  # a next key is published
    result = send("issuer/jwks.json")
    max_age = int(result.headers["cache-control"].removeprefix("public, max-age="))
    policy = LifecyclePolicy.for_purpose(stack.settings, "access")
    assert max_age <= policy.next_min_age_seconds
    assert max_age <= stack.settings.jwks_cache_ttl_seconds
    assert max_age < policy.retired_keep_seconds
    # Next keys are in the document (verifiers learn them early); no lifecycle stamps are.
    assert len(result.json()["keys"]) == 2
    for key in result.json()["keys"]:
        assert not {"status", "published_at", "retired_at", "kms_key_id"} & set(key)


def test_a_static_ring_never_serves_a_key_it_was_not_given() -> None:
    ring = KeyRing(StaticKeySource([]), _Clock(), 300, 10)
    with pytest.raises(UnknownKey):
        ring.get("some-kid")


class _Clock:
    def now(self) -> float:
        return 0.0
