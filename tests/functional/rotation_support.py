"""Shared by the key-rotation tests: two key secrets and the public JWKS parameter in moto,
filled as KeySetup fills them (an active key and a next key, stamped and published), and the
part of Secrets Manager moto cannot play: starting a rotation.

moto cannot invoke a rotation Lambda. Its RotateSecret, given a function it does not have,
creates the empty AWSPENDING version (exactly what Secrets Manager hands a rotation function's
createSecret step) and then fails to invoke: ``start_rotation`` keeps that version and returns
its id, and the tests call the four steps themselves, as Secrets Manager would.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.clock import ManualClock
from tokencore.config import Settings
from tokencore.jose.algorithms import KeyPurpose
from tokencore.keys import KeySet, KeyStatus, generate_key
from tokencore.keys.secretsmanager import create_key_set_secret
from tokencore.ops.publishing import PublishedKey, publish_public_jwks, read_published_keys
from tokencore.ops.rotation import AWSCURRENT, AWSPENDING, SecretsManagerRotation

T0 = 1_800_000_000
# A function moto does not have: RotateSecret leaves the pending version, then fails.
ROTATION_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tokencore-key-rotation"
ENV = {
    "ACCESS_TOKEN_ALG": "ES256",  # cheap to generate; RS256 is covered by KeySetup's tests
    "SIGNING_KEYS_SECRET_ID": "tokencore/rotation/signing-keys",
    "REFRESH_KEYS_SECRET_ID": "tokencore/rotation/refresh-keys",
    "PUBLIC_JWKS_PARAMETER": "/tokencore/rotation/public-jwks",
    "TOKEN_ISSUER": "https://auth.example.com",
}


@dataclass
class KeyStack:
    settings: Settings
    clock: ManualClock
    secrets: Any
    ssm: Any
    rotation: SecretsManagerRotation

    def secret_id(self, purpose: KeyPurpose) -> str:
        return self.rotation.secret_id(purpose)

    def current(self, purpose: KeyPurpose) -> KeySet:
        text = self.secrets.get_secret_value(
            SecretId=self.secret_id(purpose), VersionStage=AWSCURRENT
        )["SecretString"]
        return KeySet.from_secret_document(text, purpose)

    def pending_document(self, purpose: KeyPurpose, token: str) -> dict[str, Any]:
        text = self.secrets.get_secret_value(
            SecretId=self.secret_id(purpose), VersionId=token, VersionStage=AWSPENDING
        )["SecretString"]
        document: dict[str, Any] = json.loads(text)
        return document

    def versions(self, purpose: KeyPurpose) -> dict[str, list[str]]:
        described = self.secrets.describe_secret(SecretId=self.secret_id(purpose))
        return {k: sorted(v) for k, v in described["VersionIdsToStages"].items()}

    def published(self) -> list[PublishedKey]:
        return read_published_keys(self.ssm, self.settings.public_jwks_parameter)

    def published_statuses(self) -> dict[str, str]:
        return {entry.kid: entry.status.value for entry in self.published()}

    def start_rotation(self, purpose: KeyPurpose, *, immediately: bool = True) -> str:
        """RotateSecret as Secrets Manager runs it, up to invoking the function: the id of the
        AWSPENDING version it created (without a value, or with the current value when not
        rotating immediately: Secrets Manager then only runs testSecret)."""
        before = set(self.versions(purpose))
        with pytest.raises(ClientError, match="ResourceNotFoundException"):
            self.secrets.rotate_secret(
                SecretId=self.secret_id(purpose),
                RotationLambdaARN=ROTATION_FUNCTION_ARN,
                RotationRules={"AutomaticallyAfterDays": 90},
                RotateImmediately=immediately,
            )
        (token,) = set(self.versions(purpose)) - before
        assert self.versions(purpose)[token] == [AWSPENDING]
        return token

    def run_all(self, purpose: KeyPurpose, token: str) -> None:
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            self.rotation.run_step(step, self.secret_id(purpose), token)

    def rotate(self, purpose: KeyPurpose) -> str:
        """One whole rotation as Secrets Manager drives it; the new version's id."""
        token = self.start_rotation(purpose)
        self.run_all(purpose, token)
        return token


def make_key_stack(env: dict[str, str] | None = None, *, alg: str = "ES256") -> KeyStack:
    """Inside mock_aws: the secrets and the parameter as KeySetup leaves them at T0."""
    settings = Settings.from_env({**ENV, "ACCESS_TOKEN_ALG": alg, **(env or {})})
    clock = ManualClock(T0)
    secrets, ssm = boto3.client("secretsmanager"), boto3.client("ssm")
    for purpose, key_alg in (("access", alg), ("refresh", "HS256")):
        key_set = KeySet(
            [
                dataclasses.replace(generate_key(key_alg), created_at=T0),
                dataclasses.replace(generate_key(key_alg, KeyStatus.NEXT), created_at=T0),
            ],
            purpose,  # type: ignore[arg-type]
        )
        name = (
            settings.signing_keys_secret_id
            if purpose == "access"
            else settings.refresh_keys_secret_id
        )
        create_key_set_secret(secrets, name, key_set)
        if purpose == "access":
            publish_public_jwks(ssm, settings.public_jwks_parameter, key_set, now=T0)
    rotation = SecretsManagerRotation(settings, secretsmanager=secrets, ssm=ssm, clock=clock)
    return KeyStack(settings, clock, secrets, ssm, rotation)


def private_values(*key_sets: KeySet) -> list[str]:
    """Every private member of every key, as it appears in JSON (to prove none leaks)."""
    found = []
    for key_set in key_sets:
        for jwk in key_set.to_secret_document()["keys"]:
            found += [jwk[name] for name in ("d", "p", "q", "dp", "dq", "qi", "k") if name in jwk]
    return found
