"""Signing with AWS KMS asymmetric keys (the private key never leaves KMS).

Each access algorithm's registry entry (``jose.algorithms``) names the KMS SigningAlgorithm and
key specs that carry it, if KMS signs it for us; Sign runs with MessageType RAW: KMS hashes the
JWS signing input itself, which it accepts up to 4096 bytes (our tokens are under 1 KB). KMS
returns ECDSA signatures in DER; the entry converts them to the JWS form, raw ``r || s``.

The kid is the RFC 7638 thumbprint of the public key, so a KMS key and the same key in a JWKS
agree without any mapping table. GetPublicKey runs once per container per key (lazily), and
its answer is checked against the algorithm: the key spec, the usage and the signing
algorithms must all fit, or the key is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from tokencore.awsclient import LazyClient, aws_errors, error_code
from tokencore.errors import InvalidKeyMaterial, InvalidSignature, KeyUnavailable, SigningKeyChanged
from tokencore.jose.algorithms import ALGORITHMS, Algorithm, PublicKey, Signer, verify_signature
from tokencore.keys.jwk import verification_key_for
from tokencore.keys.model import KeySource, KeyStatus, VerificationKey

MAX_RAW_MESSAGE_BYTES = 4096
# The access algorithms KMS signs for us, in registry order.
KMS_ALGORITHMS = tuple(
    name for name in ALGORITHMS.for_purpose("access") if ALGORITHMS[name].kms_signing_algorithm
)


def kms_algorithm(alg: str) -> Algorithm | None:
    """The registry entry of ``alg`` if KMS can sign access tokens with it, else None."""
    return ALGORITHMS[alg] if alg in KMS_ALGORITHMS else None


def fetch_public_key(
    client: Any,
    key_id: str,
    *,
    expected_alg: str | None = None,
    status: KeyStatus = KeyStatus.ACTIVE,
    label: str = "KMS key",
) -> VerificationKey:
    """GetPublicKey for ``key_id``, checked, as a VerificationKey whose kid is its thumbprint.

    The algorithm follows from the key spec (the registry's ``kms_key_specs``: RSA_2048 is an
    RS256 key, and so on); with ``expected_alg`` the spec must give exactly that algorithm.
    """
    return describe_public_key(
        client, key_id, expected_alg=expected_alg, status=status, label=label
    ).key


@dataclass(frozen=True, slots=True)
class KmsPublicKey:
    """A KMS signing key as GetPublicKey describes it: its public key, ARN and key spec."""

    key: VerificationKey
    arn: str
    spec: str


def describe_public_key(
    client: Any,
    key_id: str,
    *,
    expected_alg: str | None = None,
    status: KeyStatus = KeyStatus.ACTIVE,
    label: str = "KMS key",
) -> KmsPublicKey:
    """``fetch_public_key``, with the key's ARN (an alias resolved) and spec."""
    try:
        response = client.get_public_key(KeyId=key_id)
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not read the {label} ({error_code(exc)})") from exc
    # KeySpec is current; CustomerMasterKeySpec is the deprecated twin (and all moto returns).
    spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
    algorithm = ALGORITHMS.for_kms_key_spec(spec)
    if algorithm is None or (expected_alg is not None and algorithm.name != expected_alg):
        wanted = expected_alg or " or ".join(KMS_ALGORITHMS)
        raise InvalidKeyMaterial(f"{label} has a key spec that does not fit {wanted}")
    if response.get("KeyUsage", "SIGN_VERIFY") != "SIGN_VERIFY":
        raise InvalidKeyMaterial(f"{label} is not a SIGN_VERIFY key")
    signing_algorithm = algorithm.kms_signing_algorithm
    if signing_algorithm not in (response.get("SigningAlgorithms") or ()):
        raise InvalidKeyMaterial(f"{label} does not offer {signing_algorithm}")
    der = response.get("PublicKey")
    if not isinstance(der, bytes):
        raise InvalidKeyMaterial(f"{label} returned no public key")
    try:
        public_key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise InvalidKeyMaterial(f"{label} returned an unreadable public key") from exc
    if not isinstance(public_key, PublicKey):
        raise InvalidKeyMaterial(f"{label} returned an unexpected key type")
    arn = response.get("KeyId")
    return KmsPublicKey(
        verification_key_for(public_key, algorithm.name, status=status),
        str(arn) if isinstance(arn, str) and arn else key_id,
        str(spec),
    )


def _connect(client: LazyClient, label: str) -> Any:
    """The KMS client; failing to build one (e.g. no region) is KeyUnavailable, as for a call."""
    try:
        return client.get()
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not read the {label} ({error_code(exc)})") from exc


class KmsSigner:
    """Signs with a KMS key (implements the Signer protocol).

    ``kid`` needs the public key, so the first use of ``kid`` or ``sign`` calls GetPublicKey;
    later ones do not. Each signature is checked against that public key before it is
    returned: if the key id is an alias that now points at another key (a rotation moved it),
    we raise SigningKeyChanged and fetch the public key again next time, instead of minting a
    token whose header names the old key. ``tokens.mint`` pins one key per token
    (``current()``) and starts that token over once on SigningKeyChanged, so an alias move
    costs one extra Sign call per warm container, and no failed request.
    """

    def __init__(
        self,
        key_id: str,
        alg: str,
        *,
        boto3_client: Any | None = None,
        boto3_session: Any | None = None,
        boto_config: Any | None = None,
    ) -> None:
        algorithm = kms_algorithm(alg)
        if algorithm is None:
            supported = " and ".join(KMS_ALGORITHMS)
            raise InvalidKeyMaterial(f"KMS signing supports {supported}, not {alg!r}")
        if not key_id:
            raise InvalidKeyMaterial("a KMS key id is required")
        self._key_id = key_id
        self._alg = alg
        self._algorithm = algorithm
        self._client = LazyClient("kms", boto3_client, boto3_session, boto_config)
        self._lock = threading.Lock()
        self._public: VerificationKey | None = None

    @property
    def kid(self) -> str:
        return self.verification_key().kid

    @property
    def alg(self) -> str:
        return self._alg

    def verification_key(self) -> VerificationKey:
        """The public key (fetched once, then cached), as published in the JWKS."""
        public = self._public
        if public is None:
            with self._lock:
                if self._public is None:
                    self._public = fetch_public_key(
                        _connect(self._client, "KMS signing key"),
                        self._key_id,
                        expected_alg=self._alg,
                        label="KMS signing key",
                    )
                public = self._public
        return public

    def current(self) -> Signer:
        """A signer pinned to the key the id names now (its kid), for one token."""
        return _PinnedKmsSigner(self, self.verification_key())

    def sign(self, signing_input: bytes) -> bytes:
        return self.sign_as(self.verification_key(), signing_input)

    def sign_as(self, public: VerificationKey, signing_input: bytes) -> bytes:
        """Sign, and fail with SigningKeyChanged unless ``public``'s key made the signature."""
        if not 0 < len(signing_input) <= MAX_RAW_MESSAGE_BYTES:
            raise KeyUnavailable(
                f"KMS signs RAW messages of 1 to {MAX_RAW_MESSAGE_BYTES} bytes; "
                f"this signing input has {len(signing_input)}"
            )
        try:
            response = self._client.get().sign(
                KeyId=self._key_id,
                Message=signing_input,
                MessageType="RAW",
                SigningAlgorithm=self._algorithm.kms_signing_algorithm,
            )
        except aws_errors() as exc:
            raise KeyUnavailable(f"KMS could not sign ({error_code(exc)})") from exc
        signature = response.get("Signature")
        if not isinstance(signature, bytes):
            raise KeyUnavailable("KMS returned no signature")
        # In JWS form first (a malformed DER signature is KeyUnavailable), then checked with
        # the verifiers' own code against the key the token's header names.
        jws_signature = self._algorithm.jws_signature(signature)
        try:
            verify_signature(public, signing_input, jws_signature)
        except InvalidSignature as exc:
            with self._lock:
                if self._public is public:
                    self._public = None
            raise SigningKeyChanged(
                "KMS signature does not match the cached public key (the key id now names "
                "another key)"
            ) from exc
        return jws_signature

    def __repr__(self) -> str:
        return f"KmsSigner(alg={self._alg!r})"


class _PinnedKmsSigner:
    """One KMS key for one token: its kid, and signatures checked against its public key."""

    __slots__ = ("_owner", "_public")

    def __init__(self, owner: KmsSigner, public: VerificationKey) -> None:
        self._owner = owner
        self._public = public

    @property
    def kid(self) -> str:
        return self._public.kid

    @property
    def alg(self) -> str:
        return self._owner.alg

    def sign(self, signing_input: bytes) -> bytes:
        return self._owner.sign_as(self._public, signing_input)

    def __repr__(self) -> str:
        return f"KmsSigner(alg={self._owner.alg!r}, pinned)"


class KmsKeySource:
    """A KeySource reading the public keys of the signing key and of older keys kept to verify.

    ``verify_key_ids`` (KMS_VERIFY_KEY_IDS) are keys that no longer sign but whose tokens may
    still be alive. KMS knows nothing of next/retired, so they are reported as RETIRED. Each
    key's algorithm follows from its key spec, so an RS256 -> ES256 migration needs no map.
    Any key that cannot be read fails the whole load (fail closed): remove a key id from the
    list before disabling or deleting the key.
    """

    def __init__(
        self,
        signing_key_id: str,
        verify_key_ids: Iterable[str] = (),
        *,
        boto3_client: Any | None = None,
        boto3_session: Any | None = None,
        boto_config: Any | None = None,
    ) -> None:
        if not signing_key_id:
            raise InvalidKeyMaterial("a KMS key id is required")
        key_ids = [signing_key_id]
        key_ids.extend(key_id for key_id in verify_key_ids if key_id and key_id not in key_ids)
        self._key_ids = tuple(key_ids)
        self._client = LazyClient("kms", boto3_client, boto3_session, boto_config)

    def load_verification_keys(self) -> list[VerificationKey]:
        client = _connect(self._client, "KMS signing key")
        keys: list[VerificationKey] = []
        seen: set[str] = set()
        for index, key_id in enumerate(self._key_ids):
            key = fetch_public_key(
                client,
                key_id,
                status=KeyStatus.ACTIVE if index == 0 else KeyStatus.RETIRED,
                label="KMS signing key" if index == 0 else f"KMS verify key {index}",
            )
            # An alias and a key id may name the same key: same thumbprint, same key.
            if key.kid not in seen:
                seen.add(key.kid)
                keys.append(key)
        return keys

    def __repr__(self) -> str:
        return f"KmsKeySource(keys={len(self._key_ids)})"


if TYPE_CHECKING:  # mypy checks that these classes implement the protocols
    _SIGNER: type[Signer] = KmsSigner
    _PINNED: type[Signer] = _PinnedKmsSigner
    _SOURCE: type[KeySource] = KmsKeySource
