"""KMS mode (ops.kmsrotation) against moto: rotation by a new KMS key and a moved alias, the
old key's public key kept in the published JWKS for the overlap, a warm signer that follows the
alias without a failed request, emergency revocation (the KMS key is disabled), and KeySetup
republishing without undoing any of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from functions.keysetup import app as keysetup
from tests.clock import ManualClock
from tests.functional.conftest import fresh_aws
from tokencore.config import Settings
from tokencore.errors import KeyRotationFailed, UnknownKey
from tokencore.jose.algorithms import Signer
from tokencore.jose.codec import b64url_decode
from tokencore.keys import KeyRing
from tokencore.keys.kms import KmsSigner
from tokencore.keys.ssm import SsmJwksSource
from tokencore.keys.ssmhttp import SsmHttpJwksSource
from tokencore.ops.kmsrotation import KmsRotation
from tokencore.ops.publishing import read_published_keys
from tokencore.runtime import Runtime
from tokencore.tokens import (
    AccessClaims,
    KeyLookup,
    VerifyOptions,
    mint_access_token,
    new_token_id,
    verify_access_token,
)

T0 = 1_800_000_000
ALIAS = "alias/tokencore-test-access-token-signing"
PARAMETER = "/tokencore/kms-test/public-jwks"
CACHE = 300
KEEP = 900 + 30 + 300


@dataclass
class KmsStack:
    settings: Settings
    clock: ManualClock
    kms: Any
    ssm: Any
    rotation: KmsRotation
    first_key: str

    def statuses(self) -> dict[str, str]:
        return {e.kid: e.status.value for e in read_published_keys(self.ssm, PARAMETER)}

    def alias_target(self, alias: str) -> str:
        return str(self.kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])

    def mint(self, signer: Signer) -> str:
        issued_at = int(self.clock.now())
        claims = AccessClaims(
            issuer=self.settings.token_issuer,
            audience=self.settings.token_audience,
            subject="user-1",
            session_id="session-1",
            token_id=new_token_id(),
            roles=("user",),
            issued_at=issued_at,
            expires_at=issued_at + self.settings.access_token_ttl_seconds,
        )
        return mint_access_token(signer, claims).token

    def verifier(self) -> KeyRing:
        return KeyRing(SsmJwksSource(PARAMETER, boto3_client=self.ssm), self.clock, CACHE, 10)

    def verify(self, token: str, ring: KeyLookup | None = None) -> str:
        options = VerifyOptions.for_access(self.settings)
        claims = verify_access_token(token, ring or self.verifier(), options, self.clock.now())
        return claims.subject


@pytest.fixture
def kms_stack() -> Iterator[KmsStack]:
    with fresh_aws():
        kms, ssm = boto3.client("kms"), boto3.client("ssm")
        key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
        kms.create_alias(AliasName=ALIAS, TargetKeyId=key["KeyId"])
        ssm.put_parameter(Name=PARAMETER, Value='{"keys":[]}', Type="String")
        settings = Settings.from_env(
            {
                "KEY_BACKEND": "kms",
                "KMS_SIGNING_KEY_ID": ALIAS,
                "ACCESS_TOKEN_ALG": "ES256",
                "PUBLIC_JWKS_PARAMETER": PARAMETER,
            }
        )
        clock = ManualClock(T0)
        rotation = KmsRotation.from_settings(settings, kms=kms, ssm=ssm, clock=clock)
        rotation.publish()  # what KeySetup does on the first deployment
        yield KmsStack(settings, clock, kms, ssm, rotation, key["Arn"])


def kid_of(token: str) -> str:
    return str(json.loads(b64url_decode(token.split(".")[0]))["kid"])


def test_rotation_publishes_a_next_key_then_moves_the_alias_to_it(kms_stack: KmsStack) -> None:
    first = kms_stack.rotation.state().active.key.kid
    assert kms_stack.statuses() == {first: "active"}

    # A stack without a next key: the first rotation only creates and publishes one.
    report = kms_stack.rotation.rotate()
    assert report["promoted"] is False
    following = report["added_next_kid"]
    assert kms_stack.statuses() == {first: "active", following: "next"}
    assert kms_stack.alias_target(ALIAS) == kms_stack.first_key
    assert kms_stack.rotation.state().next is not None

    # Promoting it waits until verifiers have had it for the cache TTL.
    kms_stack.clock.advance(CACHE - 1)
    deferred = kms_stack.rotation.rotate()
    assert deferred["promoted"] is False
    assert deferred["deferred_until"] == T0 + CACHE
    kms_stack.clock.advance(1)
    promoted = kms_stack.rotation.rotate()
    assert promoted["promoted"] is True
    assert promoted["active_kid"] == following
    assert promoted["newly_retired_kid"] == first
    newest = promoted["added_next_kid"]
    assert kms_stack.statuses() == {following: "active", newest: "next", first: "retired"}
    assert kms_stack.alias_target(ALIAS) != kms_stack.first_key
    state = kms_stack.rotation.state()
    assert state.active.key.kid == following
    assert state.next is not None
    assert state.next.key.kid == newest
    # The retired key is kept with the KMS key's id, so it can be disabled if need be.
    retired = next(e for e in read_published_keys(kms_stack.ssm, PARAMETER) if e.kid == first)
    assert retired.kms_key_id is not None
    assert retired.kms_key_id in kms_stack.first_key
    assert retired.retired_at == T0 + CACHE


def test_a_warm_signer_follows_the_alias_and_old_tokens_keep_verifying(
    kms_stack: KmsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(kms_stack.settings, kms_stack.clock)  # a warm issuer container
    signer = runtime.access_signer
    assert isinstance(signer, KmsSigner)
    ring = runtime.access_keys  # verifiers read the published JWKS, in KMS mode too
    # boto3-free: the environment holds credentials, as every Lambda function's does
    assert isinstance(runtime.public_key_source, SsmHttpJwksSource)
    before = kms_stack.mint(signer)
    old = kid_of(before)
    assert kms_stack.verify(before, ring) == "user-1"

    kms_stack.rotation.rotate()
    kms_stack.clock.advance(CACHE)
    assert kms_stack.rotation.rotate()["promoted"] is True
    signs: list[str] = []
    original = BaseClient._make_api_call

    def spy(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "Sign":
            signs.append(operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)

    after = kms_stack.mint(signer)  # no failure: the token starts over with the new key

    assert kid_of(after) != old
    assert len(signs) == 2  # one signature by the new key over the old kid, thrown away
    assert kms_stack.verify(after, ring) == "user-1"
    assert kms_stack.verify(before, ring) == "user-1"  # old tokens: until they expire
    kms_stack.mint(signer)
    assert len(signs) == 3


def test_a_retired_kms_key_leaves_the_jwks_after_its_tokens_expire(kms_stack: KmsStack) -> None:
    first = kms_stack.rotation.state().active.key.kid
    kms_stack.rotation.rotate()
    kms_stack.clock.advance(CACHE)
    kms_stack.rotation.rotate()
    kms_stack.clock.advance(KEEP - 1)
    kms_stack.rotation.rotate(force=True)
    assert first in kms_stack.statuses()
    kms_stack.clock.advance(1)
    report = kms_stack.rotation.rotate(force=True)
    assert first in report["pruned_kids"]
    assert report["pruned_kms_key_ids"]  # for the operator to schedule their deletion
    assert first not in kms_stack.statuses()


def test_revoking_the_active_kms_key(kms_stack: KmsStack) -> None:
    runtime = Runtime(kms_stack.settings, kms_stack.clock)
    ring = runtime.access_keys
    token = kms_stack.mint(runtime.access_signer)
    victim = kid_of(token)
    kms_stack.verify(token, ring)
    kms_stack.rotation.rotate()  # a published next key

    report = kms_stack.rotation.revoke(victim)

    assert report["revoked_status"] == "active"
    assert report["replacement_was_published"] is True
    assert victim not in kms_stack.statuses()
    key = kms_stack.kms.describe_key(KeyId=kms_stack.first_key)["KeyMetadata"]
    assert key["KeyState"] == "Disabled"  # nothing can sign with it any more
    assert kms_stack.alias_target(ALIAS) != kms_stack.first_key
    # Signers move with the alias; verifiers refuse the revoked key's tokens once their cache
    # expires (before that, they still accept them: the documented bound).
    fresh = kms_stack.mint(runtime.access_signer)
    assert kid_of(fresh) == report["active_kid"]
    assert kms_stack.verify(token, ring) == "user-1"
    kms_stack.clock.advance(CACHE)
    with pytest.raises(UnknownKey):
        kms_stack.verify(token, ring)
    assert kms_stack.verify(fresh, ring) == "user-1"


def test_revoking_the_next_or_a_retired_kms_key(kms_stack: KmsStack) -> None:
    first = kms_stack.rotation.state().active.key.kid
    kms_stack.rotation.rotate()
    kms_stack.clock.advance(CACHE)
    report = kms_stack.rotation.rotate()
    following = report["added_next_kid"]

    revoked_next = kms_stack.rotation.revoke(following)
    assert revoked_next["revoked_status"] == "next"
    assert kms_stack.rotation.state().next is None
    assert following not in kms_stack.statuses()

    revoked_retired = kms_stack.rotation.revoke(first)
    assert revoked_retired["revoked_status"] == "retired"
    assert first not in kms_stack.statuses()
    key = kms_stack.kms.describe_key(KeyId=kms_stack.first_key)["KeyMetadata"]
    assert key["KeyState"] == "Disabled"
    with pytest.raises(LookupError):
        kms_stack.rotation.revoke(first)


def test_keysetup_republishes_without_undoing_a_rotation(kms_stack: KmsStack) -> None:
    first = kms_stack.rotation.state().active.key.kid
    kms_stack.rotation.rotate()
    kms_stack.clock.advance(CACHE)
    kms_stack.rotation.rotate()
    before = {e.kid: (e.status, e.published_at, e.retired_at) for e in _published(kms_stack)}

    request = keysetup.Request.from_properties(
        {
            "KeyBackend": "kms",
            "AccessTokenAlg": "ES256",
            "SigningKeysSecretId": "",
            "RefreshKeysSecretId": "unused",
            "PublicJwksParameter": PARAMETER,
            "KmsSigningKeyId": ALIAS,
            "KmsVerifyKeyIds": "",
        }
    )
    keys = keysetup.kms_publish(
        keysetup.Clients(secretsmanager=None, ssm=kms_stack.ssm, kms=kms_stack.kms), request
    )

    assert {key.kid for key in keys} == set(before)
    after = {e.kid: (e.status, e.published_at, e.retired_at) for e in _published(kms_stack)}
    assert after == before
    assert after[first][0].value == "retired"


def _published(kms_stack: KmsStack) -> list[Any]:
    return read_published_keys(kms_stack.ssm, PARAMETER)


def test_a_signing_key_given_by_arn_is_rotated_by_redeploying(kms_stack: KmsStack) -> None:
    by_arn = KmsRotation(
        kms=kms_stack.kms,
        ssm=kms_stack.ssm,
        signing_key_id=kms_stack.first_key,
        parameter_name=PARAMETER,
        alg="ES256",
        policy=kms_stack.rotation._policy,
        clock=kms_stack.clock,
    )
    with pytest.raises(KeyRotationFailed, match="redeploying"):
        by_arn.rotate()
    assert [key.kid for key in by_arn.publish()] == [kms_stack.rotation.state().active.key.kid]


def test_the_old_key_of_a_redeployment_is_kept_retired_for_the_overlap(
    kms_stack: KmsStack,
) -> None:
    """KmsSigningKeyId changed by a deployment (the runbook for a key given by ARN): the key
    that was active stays published, retired, even if KmsVerifyKeyIds forgot it."""
    old = kms_stack.rotation.state().active.key.kid
    new = kms_stack.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    redeployed = KmsRotation(
        kms=kms_stack.kms,
        ssm=kms_stack.ssm,
        signing_key_id=new["KeyMetadata"]["Arn"],
        parameter_name=PARAMETER,
        alg="ES256",
        policy=kms_stack.rotation._policy,
        clock=kms_stack.clock,
    )
    redeployed.publish()
    statuses = kms_stack.statuses()
    assert statuses[old] == "retired"
    assert len(statuses) == 2
