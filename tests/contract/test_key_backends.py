"""The AWS key backends against moto: Secrets Manager key sets, KMS signing keys, and the
public JWKS in SSM Parameter Store.

moto's KMS is faithful for RAW RSASSA-PKCS1-v1_5 and ECDSA signing, which is all we use (its
DIGEST mode and RSA-PSS are not, and are not tested here). Failures AWS would return (access
denied, throttling) are injected with a botocore event hook that raises ClientError.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from moto import mock_aws

from tests.clock import ManualClock
from tokencore.errors import ConfigError, InvalidKeyMaterial, KeyUnavailable
from tokencore.keys import (
    KeyRing,
    KeySet,
    KeyStatus,
    VerificationKey,
    generate_key,
    key_thumbprint,
)
from tokencore.keys.kms import KmsKeySource, KmsSigner
from tokencore.keys.secretsmanager import (
    SecretsManagerKeySource,
    create_key_set_secret,
    put_key_set_secret,
)
from tokencore.keys.ssm import SsmJwksSource
from tokencore.ops.publishing import publish_public_jwks


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    # One mock for the module (starting one per test costs more than the tests): every test
    # uses its own secret names and KMS keys, and the hooks fixture removes its event hooks.
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def secrets(aws: None) -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture(scope="module")
def kms(aws: None) -> Any:
    return boto3.client("kms")


@pytest.fixture(scope="module")
def ssm(aws: None) -> Any:
    return boto3.client("ssm")


@pytest.fixture
def secret_name() -> str:
    return f"tokencore/test-{uuid.uuid4().hex}"


@pytest.fixture
def parameter_name() -> str:
    return f"/tokencore/test-{uuid.uuid4().hex}/public-jwks"


class Hooks:
    """botocore event hooks that count or fail calls, removed when the test ends."""

    def __init__(self) -> None:
        self._registered: list[tuple[Any, str, Callable[..., None]]] = []

    def _register(self, client: Any, event: str, handler: Callable[..., None]) -> None:
        client.meta.events.register(event, handler)
        self._registered.append((client, event, handler))

    def count(self, client: Any, service: str, operation: str) -> list[str]:
        """Record each call of ``operation`` made through ``client``."""
        calls: list[str] = []
        self._register(
            client, f"before-call.{service}.{operation}", lambda **_: calls.append(operation)
        )
        return calls

    def fail(self, client: Any, service: str, operation: str, code: str) -> Callable[[], None]:
        """Make ``operation`` fail with ``code`` as AWS would; returns a function that stops it."""

        def handler(**_: Any) -> None:
            error = {"Error": {"Code": code, "Message": "arn:aws:... is not authorized"}}
            raise ClientError(error, operation)

        event = f"before-call.{service}.{operation}"
        self._register(client, event, handler)
        return lambda: client.meta.events.unregister(event, handler)

    def remove_all(self) -> None:
        for client, event, handler in self._registered:
            client.meta.events.unregister(event, handler)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    registered = Hooks()
    yield registered
    registered.remove_all()


def verifies(key: VerificationKey, message: bytes, signature: bytes) -> bool:
    """Verify a JWS-form signature with cryptography directly."""
    material = key.key
    try:
        if isinstance(material, rsa.RSAPublicKey):
            material.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(material, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            material.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(material, Ed25519PublicKey):
            material.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@pytest.fixture(scope="module")
def access_set() -> KeySet:
    return KeySet(
        [generate_key("ES256"), generate_key("EdDSA", KeyStatus.NEXT)],
        "access",
    )


# --- Secrets Manager --------------------------------------------------------------------------


def test_secret_is_read_once_across_many_signatures(
    secrets: Any, access_set: KeySet, hooks: Hooks, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    reads = hooks.count(secrets, "secrets-manager", "GetSecretValue")
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    assert reads == []  # nothing is read before first use
    verification = {key.kid: key for key in access_set.verification_keys()}
    for i in range(100):
        signer = source.signer()
        message = f"header.payload-{i}".encode()
        assert verifies(verification[signer.kid], message, signer.sign(message))
    assert signer.kid == access_set.active.kid
    assert signer.alg == "ES256"
    assert reads == ["GetSecretValue"]


def test_the_client_is_created_lazily_from_the_environment(
    secrets: Any, access_set: KeySet, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    source = SecretsManagerKeySource(secret_name, "access")  # no client: boto3 builds one on use
    assert source.key_set().active.kid == access_set.active.kid


def test_an_injected_session_and_config_are_used(
    secrets: Any, access_set: KeySet, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    session = boto3.session.Session()
    created: list[str] = []
    session.events.register(
        "creating-client-class.secrets-manager", lambda **_: created.append("x")
    )
    source = SecretsManagerKeySource(
        secret_name, "access", boto3_session=session, boto_config=Config(read_timeout=5)
    )
    assert created == []
    assert source.signer().kid == access_set.active.kid
    assert created == ["x"]


def test_load_verification_keys_rereads_and_picks_up_a_rotation(
    secrets: Any, access_set: KeySet, hooks: Hooks, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    reads = hooks.count(secrets, "secrets-manager", "GetSecretValue")
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    first = source.load_verification_keys()
    assert [key.kid for key in first] == [key.kid for key in access_set.verification_keys()]
    old, nxt = access_set.entries
    rotated = KeySet(
        [old.with_status(KeyStatus.RETIRED), nxt.with_status(KeyStatus.ACTIVE)], "access"
    )
    put_key_set_secret(secrets, secret_name, rotated)
    assert source.signer().kid == old.kid  # cached until the refetch path runs
    keys = source.load_verification_keys()
    assert [(key.kid, key.status) for key in keys] == [
        (nxt.kid, KeyStatus.ACTIVE),
        (old.kid, KeyStatus.RETIRED),
    ]
    assert source.signer().kid == nxt.kid
    assert len(reads) == 2


def test_a_key_ring_over_the_secret_verifies_what_the_signer_signs(
    secrets: Any, access_set: KeySet, clock: ManualClock, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    ring = KeyRing(source, clock, 300, 10)
    signature = source.signer().sign(b"a.b")
    assert verifies(ring.get(source.signer().kid), b"a.b", signature)


def test_refresh_secret_holds_hs256_keys(secrets: Any, secret_name: str) -> None:
    refresh = KeySet([generate_key("HS256")], "refresh")
    create_key_set_secret(secrets, secret_name, refresh)
    source = SecretsManagerKeySource(secret_name, "refresh", boto3_client=secrets)
    assert source.signer().sign(b"x") == refresh.signer().sign(b"x")
    # An access source must refuse the refresh secret: secrets never sign access tokens.
    wrong = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    with pytest.raises(InvalidKeyMaterial, match="HS256"):
        wrong.signer()


def test_missing_secret_is_key_unavailable(secrets: Any) -> None:
    source = SecretsManagerKeySource("tokencore/nope", "access", boto3_client=secrets)
    with pytest.raises(KeyUnavailable) as caught:
        source.signer()
    assert not isinstance(caught.value, InvalidKeyMaterial)
    assert "ResourceNotFoundException" in caught.value.message
    assert "tokencore/nope" not in caught.value.message
    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_aws_errors_are_key_unavailable(
    secrets: Any, access_set: KeySet, code: str, hooks: Hooks, secret_name: str
) -> None:
    create_key_set_secret(secrets, secret_name, access_set)
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    signer = source.signer()
    stop = hooks.fail(secrets, "secrets-manager", "GetSecretValue", code)
    with pytest.raises(KeyUnavailable, match=code) as caught:
        source.load_verification_keys()
    assert "arn:aws" not in caught.value.message
    assert source.signer() is signer  # a failed refetch keeps the cached set for signing
    stop()
    assert source.load_verification_keys()


@pytest.mark.parametrize(
    "secret_string",
    [
        "not json",
        "[]",
        '{"version": 1, "keys": []}',
        '{"version": 2, "keys": []}',
        '{"keys": [], "keys": []}',
    ],
)
def test_malformed_secret_is_invalid_key_material(
    secrets: Any, secret_string: str, secret_name: str
) -> None:
    secrets.create_secret(Name=secret_name, SecretString=secret_string)
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    with pytest.raises(InvalidKeyMaterial):
        source.signer()


def test_secret_without_an_active_key_is_invalid_key_material(
    secrets: Any, secret_name: str
) -> None:
    document = KeySet([generate_key("EdDSA")], "access").to_secret_document()
    document["keys"][0]["status"] = "retired"
    secrets.create_secret(Name=secret_name, SecretString=json.dumps(document))
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    with pytest.raises(InvalidKeyMaterial, match="active") as caught:
        source.load_verification_keys()
    assert document["keys"][0]["d"] not in caught.value.message


def test_binary_secret_is_invalid_key_material(secrets: Any, secret_name: str) -> None:
    secrets.create_secret(Name=secret_name, SecretBinary=b"\x00\x01")
    source = SecretsManagerKeySource(secret_name, "access", boto3_client=secrets)
    with pytest.raises(InvalidKeyMaterial, match="SecretString"):
        source.signer()


def test_provisioning_helpers_map_errors(
    secrets: Any, access_set: KeySet, secret_name: str
) -> None:
    arn = create_key_set_secret(secrets, secret_name, access_set)
    assert arn.startswith("arn:aws:secretsmanager:")
    with pytest.raises(KeyUnavailable, match="ResourceExistsException"):
        create_key_set_secret(secrets, secret_name, access_set)
    with pytest.raises(KeyUnavailable, match="ResourceNotFoundException"):
        put_key_set_secret(secrets, "tokencore/nope", access_set)


# --- KMS --------------------------------------------------------------------------------------


def create_kms_key(kms: Any, spec: str, usage: str = "SIGN_VERIFY") -> str:
    return str(kms.create_key(KeyUsage=usage, KeySpec=spec)["KeyMetadata"]["KeyId"])


def kms_public_key(kms: Any, key_id: str) -> Any:
    """The public key, read from KMS independently of the code under test."""
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])


@pytest.mark.parametrize(
    ("spec", "alg", "size"), [("RSA_2048", "RS256", 256), ("ECC_NIST_P256", "ES256", 64)]
)
def test_kms_signatures_verify_with_the_kms_public_key(
    kms: Any, spec: str, alg: str, size: int, hooks: Hooks
) -> None:
    key_id = create_kms_key(kms, spec)
    public = kms_public_key(kms, key_id)
    lookups = hooks.count(kms, "kms", "GetPublicKey")
    signs = hooks.count(kms, "kms", "Sign")
    signer = KmsSigner(key_id, alg, boto3_client=kms)
    assert lookups == []  # lazy
    assert signer.kid == key_thumbprint(public)
    reference = VerificationKey(kid=signer.kid, alg=alg, key=public)
    for i in range(20):
        message = f"eyJhbGciOi.payload-{i}".encode()
        signature = signer.sign(message)
        assert len(signature) == size
        assert verifies(reference, message, signature)
        assert not verifies(reference, message + b"!", signature)
        assert signer.kid == reference.kid
    assert lookups == ["GetPublicKey"]  # once per signer, not per signature
    assert len(signs) == 20
    assert signer.verification_key().key == public


def test_kms_refuses_input_over_4096_bytes_before_calling(kms: Any, hooks: Hooks) -> None:
    signer = KmsSigner(create_kms_key(kms, "ECC_NIST_P256"), "ES256", boto3_client=kms)
    signs = hooks.count(kms, "kms", "Sign")
    assert len(signer.sign(b"x" * 4096)) == 64
    with pytest.raises(KeyUnavailable, match="4096"):
        signer.sign(b"x" * 4097)
    with pytest.raises(KeyUnavailable):
        signer.sign(b"")
    assert len(signs) == 1


@pytest.mark.parametrize(
    ("spec", "alg", "usage"),
    [
        ("RSA_2048", "ES256", "SIGN_VERIFY"),
        ("ECC_NIST_P256", "RS256", "SIGN_VERIFY"),
        ("ECC_NIST_P384", "ES256", "SIGN_VERIFY"),
        ("ECC_SECG_P256K1", "ES256", "SIGN_VERIFY"),
        ("RSA_2048", "RS256", "ENCRYPT_DECRYPT"),
    ],
)
def test_kms_key_that_does_not_fit_the_algorithm_is_refused(
    kms: Any, spec: str, alg: str, usage: str, hooks: Hooks
) -> None:
    signer = KmsSigner(create_kms_key(kms, spec, usage), alg, boto3_client=kms)
    signs = hooks.count(kms, "kms", "Sign")
    with pytest.raises(InvalidKeyMaterial):
        signer.sign(b"a.b")
    with pytest.raises(InvalidKeyMaterial):
        _ = signer.kid
    assert signs == []


def test_kms_signer_refuses_algorithms_kms_cannot_do() -> None:
    for alg in ("EdDSA", "HS256", "PS256"):
        with pytest.raises(InvalidKeyMaterial):
            KmsSigner("alias/x", alg)


@pytest.mark.parametrize("operation", ["GetPublicKey", "Sign"])
@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_kms_errors_are_key_unavailable(kms: Any, operation: str, code: str, hooks: Hooks) -> None:
    signer = KmsSigner(create_kms_key(kms, "ECC_NIST_P256"), "ES256", boto3_client=kms)
    stop = hooks.fail(kms, "kms", operation, code)
    with pytest.raises(KeyUnavailable, match=code) as caught:
        signer.sign(b"a.b")
    assert not isinstance(caught.value, InvalidKeyMaterial)
    assert "arn:aws" not in caught.value.message
    assert isinstance(caught.value.__cause__, ClientError)
    stop()
    assert len(signer.sign(b"a.b")) == 64


def test_kms_missing_key_is_key_unavailable(kms: Any) -> None:
    signer = KmsSigner("11111111-2222-3333-4444-555555555555", "RS256", boto3_client=kms)
    with pytest.raises(KeyUnavailable, match="NotFoundException"):
        _ = signer.kid


def test_kms_alias_moved_to_another_key_is_detected(kms: Any) -> None:
    first = create_kms_key(kms, "ECC_NIST_P256")
    second = create_kms_key(kms, "ECC_NIST_P256")
    kms.create_alias(AliasName="alias/tokencore-signing", TargetKeyId=first)
    signer = KmsSigner("alias/tokencore-signing", "ES256", boto3_client=kms)
    old_kid = signer.kid
    signer.sign(b"a.b")
    kms.update_alias(AliasName="alias/tokencore-signing", TargetKeyId=second)
    with pytest.raises(KeyUnavailable, match="cached public key"):
        signer.sign(b"a.b")  # never a token whose kid names the old key
    signature = signer.sign(b"a.b")  # the public key was fetched again
    assert signer.kid != old_kid
    assert signer.kid == key_thumbprint(kms_public_key(kms, second))
    assert verifies(signer.verification_key(), b"a.b", signature)


def test_kms_key_source_serves_signing_and_verify_keys(kms: Any, clock: ManualClock) -> None:
    current = create_kms_key(kms, "ECC_NIST_P256")
    older = create_kms_key(kms, "RSA_2048")
    kms.create_alias(AliasName="alias/current", TargetKeyId=current)
    source = KmsKeySource("alias/current", [older, current, ""], boto3_client=kms)
    keys = source.load_verification_keys()
    assert [(key.alg, key.status) for key in keys] == [
        ("ES256", KeyStatus.ACTIVE),
        ("RS256", KeyStatus.RETIRED),
    ]  # the alg follows the key spec; the alias and its key id count once
    assert keys[0].kid == key_thumbprint(kms_public_key(kms, current))
    ring = KeyRing(source, clock, 300, 10)
    for key_id, alg in ((current, "ES256"), (older, "RS256")):
        signer = KmsSigner(key_id, alg, boto3_client=kms)
        assert verifies(ring.get(signer.kid), b"a.b", signer.sign(b"a.b"))


def test_kms_key_source_fails_closed(kms: Any) -> None:
    current = create_kms_key(kms, "ECC_NIST_P256")
    source = KmsKeySource(current, ["alias/gone"], boto3_client=kms)
    with pytest.raises(KeyUnavailable, match="verify key 1"):
        source.load_verification_keys()
    p384 = create_kms_key(kms, "ECC_NIST_P384")
    with pytest.raises(InvalidKeyMaterial):
        KmsKeySource(current, [p384], boto3_client=kms).load_verification_keys()


# --- SSM Parameter Store: the public JWKS ----------------------------------------------------

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@pytest.fixture(scope="module")
def mixed_access_set() -> KeySet:
    """One key of each access algorithm, so every private member (RSA's d, p, q, dp, dq, qi;
    EC's and OKP's d) is there to leak."""
    return KeySet(
        [
            generate_key("ES256"),
            generate_key("RS256", KeyStatus.NEXT),
            generate_key("EdDSA", KeyStatus.RETIRED),
        ],
        "access",
    )


def test_published_jwks_round_trips_to_the_verifier(
    ssm: Any, mixed_access_set: KeySet, parameter_name: str, clock: ManualClock
) -> None:
    publish_public_jwks(ssm, parameter_name, mixed_access_set)
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    loaded = source.load_verification_keys()
    expected = mixed_access_set.verification_keys()
    assert [(key.kid, key.alg) for key in loaded] == [(key.kid, key.alg) for key in expected]
    for got, want in zip(loaded, expected, strict=True):
        assert got.key == want.key
    ring = KeyRing(source, clock, 300, 10)
    signer = mixed_access_set.signer()
    assert verifies(ring.get(signer.kid), b"a.b", signer.sign(b"a.b"))
    parameter = ssm.get_parameter(Name=parameter_name)["Parameter"]
    assert parameter["Type"] == "String"


def test_publishing_again_overwrites_the_parameter(
    ssm: Any, access_set: KeySet, mixed_access_set: KeySet, parameter_name: str
) -> None:
    publish_public_jwks(ssm, parameter_name, access_set)
    publish_public_jwks(ssm, parameter_name, mixed_access_set)
    loaded = SsmJwksSource(parameter_name, boto3_client=ssm).load_verification_keys()
    assert [key.kid for key in loaded] == [key.kid for key in mixed_access_set.verification_keys()]


def test_no_private_key_material_reaches_the_parameter(
    ssm: Any, mixed_access_set: KeySet, parameter_name: str
) -> None:
    publish_public_jwks(ssm, parameter_name, mixed_access_set)
    text = ssm.get_parameter(Name=parameter_name)["Parameter"]["Value"]
    document = json.loads(text)
    assert len(document["keys"]) == 3
    for jwk in document["keys"]:
        assert not set(PRIVATE_MEMBERS) & set(jwk), jwk.keys()
    private_values = [
        jwk[name]
        for jwk in mixed_access_set.to_secret_document()["keys"]
        for name in PRIVATE_MEMBERS
        if name in jwk
    ]
    assert len(private_values) == 8  # RSA: 6, EC: 1, OKP: 1
    for value in private_values:
        assert value not in text


def test_a_refresh_key_set_is_never_published(ssm: Any, parameter_name: str) -> None:
    refresh = KeySet([generate_key("HS256")], "refresh")
    with pytest.raises(InvalidKeyMaterial):
        publish_public_jwks(ssm, parameter_name, refresh)
    with pytest.raises(ClientError, match="ParameterNotFound"):
        ssm.get_parameter(Name=parameter_name)


def test_get_parameter_runs_exactly_once_per_load(
    ssm: Any, access_set: KeySet, hooks: Hooks, parameter_name: str
) -> None:
    publish_public_jwks(ssm, parameter_name, access_set)
    reads = hooks.count(ssm, "ssm", "GetParameter")
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    assert reads == []  # nothing is read before the first load
    source.load_verification_keys()
    assert reads == ["GetParameter"]
    source.load_verification_keys()  # no cache of its own: the KeyRing decides when to load
    assert reads == ["GetParameter", "GetParameter"]


def test_the_parameter_source_creates_its_client_lazily_from_the_environment(
    ssm: Any, access_set: KeySet, parameter_name: str
) -> None:
    publish_public_jwks(ssm, parameter_name, access_set)
    source = SsmJwksSource(parameter_name)  # no client: boto3 builds one on use
    assert [key.kid for key in source.load_verification_keys()] == [
        key.kid for key in access_set.verification_keys()
    ]


def test_missing_parameter_is_key_unavailable(ssm: Any, parameter_name: str) -> None:
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    with pytest.raises(KeyUnavailable) as caught:
        source.load_verification_keys()
    assert not isinstance(caught.value, InvalidKeyMaterial)
    assert "ParameterNotFound" in caught.value.message
    assert parameter_name not in caught.value.message
    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_parameter_errors_are_key_unavailable(
    ssm: Any, access_set: KeySet, code: str, hooks: Hooks, parameter_name: str
) -> None:
    publish_public_jwks(ssm, parameter_name, access_set)
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    stop = hooks.fail(ssm, "ssm", "GetParameter", code)
    with pytest.raises(KeyUnavailable, match=code) as caught:
        source.load_verification_keys()
    assert "arn:aws" not in caught.value.message
    stop()
    assert source.load_verification_keys()


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '{"keys": [',
        "[]",
        '{"keys": []}',
        '{"keys": [], "keys": []}',
        '{"keys": [{"kty": "oct", "kid": "x", "alg": "HS256", "k": "c2VjcmV0"}]}',
    ],
)
def test_malformed_parameter_is_invalid_key_material(
    ssm: Any, value: str, parameter_name: str
) -> None:
    ssm.put_parameter(Name=parameter_name, Value=value, Type="String")
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    with pytest.raises(InvalidKeyMaterial):
        source.load_verification_keys()


def test_a_jwk_with_private_members_is_refused_by_the_verifier(
    ssm: Any, access_set: KeySet, parameter_name: str
) -> None:
    """Someone pasting the secret's key into the parameter breaks verification loudly."""
    leaked = {"keys": access_set.to_secret_document()["keys"]}
    ssm.put_parameter(Name=parameter_name, Value=json.dumps(leaked), Type="String")
    source = SsmJwksSource(parameter_name, boto3_client=ssm)
    with pytest.raises(InvalidKeyMaterial) as caught:
        source.load_verification_keys()
    assert leaked["keys"][0]["d"] not in caught.value.message


def test_publish_errors_are_key_unavailable(
    ssm: Any, access_set: KeySet, hooks: Hooks, parameter_name: str
) -> None:
    hooks.fail(ssm, "ssm", "PutParameter", "AccessDeniedException")
    with pytest.raises(KeyUnavailable, match="AccessDeniedException") as caught:
        publish_public_jwks(ssm, parameter_name, access_set)
    assert "arn:aws" not in caught.value.message


def test_the_parameter_source_needs_a_name() -> None:
    with pytest.raises(ConfigError):
        SsmJwksSource("")


# --- All AWS key backends ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "use",
    [
        lambda: KmsSigner("alias/k", "ES256").sign(b"a.b"),
        lambda: KmsKeySource("alias/k").load_verification_keys(),
        lambda: SecretsManagerKeySource("tokencore/k", "access").signer(),
        lambda: SsmJwksSource("/tokencore/k").load_verification_keys(),
    ],
    ids=["kms-signer", "kms-source", "secretsmanager", "ssm"],
)
def test_a_client_that_cannot_be_built_is_key_unavailable(
    use: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(KeyUnavailable, match="NoRegionError") as caught:
        use()
    assert not isinstance(caught.value, InvalidKeyMaterial)
