"""The algorithm registry: one entry per JWS algorithm, and the only place that names one.

Each entry says what its algorithm is (family, JWK ``kty``/``crv``, the key checks), does what
it does with ``cryptography``'s primitives (sign with a private key, verify with a public key
or an HMAC secret, in the JWS signature encoding: raw ``r || s`` for ECDSA), and says how AWS
KMS offers it, if KMS does. Its ``purpose`` says where it may be used: ``access`` (asymmetric:
access tokens, published in the JWKS), ``refresh`` (HMAC: refresh tokens, never published), or
None (known to the signature layer for the public JOSE vectors only; no key set may hold it).

Every allow-list in the code derives from :data:`ALGORITHMS`: the settings' choices, JWK
parsing, key sets, verification, minting, KMS and KeySetup. Adding an algorithm (ES384, say)
is one entry here, plus its name in ``AccessAlgorithm`` (which a test holds equal to the
registry); docs/keys.md walks through it.

Verification calls ``cryptography`` directly, as PyJWT's ``Algorithm.verify`` does, without
importing PyJWT: ``import jwt`` loads its X.509, JWKS-client and HTTP modules, which is most
of a verifier's cold start. Which algorithm runs is decided by the key, never by the token.
This module imports nothing heavier than ``cryptography``'s primitives (no boto3, no argon2,
no serialization module): the authorizer imports it on its cold start.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Literal, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tokencore.errors import (
    AlgorithmNotAllowed,
    InvalidKeyMaterial,
    InvalidSignature,
    KeyUnavailable,
)

# Where a key may be used: access tokens (asymmetric) or refresh tokens (HMAC).
KeyPurpose = Literal["access", "refresh"]
Family = Literal["RSA", "ECDSA", "EdDSA", "HMAC"]
# The settings' type for ACCESS_TOKEN_ALG (mypy needs a Literal); tests/unit/test_jose.py holds
# it equal to ALGORITHMS.for_purpose("access").
AccessAlgorithm = Literal["RS256", "ES256", "EdDSA"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey
# Builds the caller's exception from a problem (the key checks name no key material).
Fail = Callable[[str], Exception]

MIN_RSA_BITS = 2048
# Verification cost grows with the modulus; 8192 bits covers every sane deployment.
MAX_RSA_BITS = 8192
MIN_HMAC_KEY_BYTES = 32


def _invalid_key(problem: str) -> Exception:
    return InvalidKeyMaterial(problem)


# --- the keys and signers the registry works with ---------------------------------------------


class JwsKey(Protocol):
    """A verification key bound to one algorithm (``keys.VerificationKey``): a public key, or
    the raw secret for an HMAC algorithm."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    @property
    def key(self) -> PublicKey | bytes: ...


class Signer(Protocol):
    """Produces JWS signatures for one key and one algorithm.

    ``sign`` takes the JWS signing input (``base64url(header) + "." + base64url(payload)``)
    and returns the signature bytes in JWS form (raw ``r || s`` for ECDSA, never DER).
    """

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    def sign(self, signing_input: bytes) -> bytes: ...


@runtime_checkable
class RotatingSigner(Protocol):
    """A signer whose key may change (a key set that rotates, a KMS alias that moves).

    ``current()`` returns a signer pinned to one key: a token's header names the kid of that key
    and that key signs it, even if a rotation lands in between.
    """

    def current(self) -> Signer: ...


def pinned(signer: Signer) -> Signer:
    """The signer to use for one token: ``signer.current()`` if it rotates, else ``signer``."""
    return signer.current() if isinstance(signer, RotatingSigner) else signer


# --- one entry per algorithm ------------------------------------------------------------------


class Algorithm(ABC):
    """One JWS algorithm. Subclasses are the families; instances are the registry's entries."""

    family: Family
    kty: str  # the JWK key type
    crv: str | None = None  # the JWK curve, for EC and OKP keys

    def __init__(
        self,
        name: str,
        *,
        purpose: KeyPurpose | None,
        kms_signing_algorithm: str | None = None,
        kms_key_specs: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.purpose = purpose
        # KMS: the SigningAlgorithm of Sign, and the KeySpecs a key may have (the first is the
        # one a rotation creates); None and () where KMS does not sign this algorithm for us.
        self.kms_signing_algorithm = kms_signing_algorithm
        self.kms_key_specs = kms_key_specs

    @property
    def symmetric(self) -> bool:
        return self.family == "HMAC"

    @abstractmethod
    def check_public_key(self, key: object, fail: Fail = _invalid_key) -> None:
        """Refuse (raise ``fail(problem)``) a verification key whose type, size or curve does
        not fit; for HMAC, the secret itself."""

    def check_private_key(self, key: object, fail: Fail = _invalid_key) -> None:
        """Refuse a signing key that does not fit (its public half gets the public checks)."""
        public = getattr(key, "public_key", None)
        if isinstance(key, bytes) or public is None:
            raise fail(f"the key does not fit alg {self.name}")
        self.check_public_key(public(), fail)

    @abstractmethod
    def fits(self, material: object) -> bool:
        """The verify path's cheap re-check of a key's type (the full checks ran when the key
        was loaded; a hand-built key must still not slip by)."""

    @abstractmethod
    def generate(self, *, rsa_bits: int = MIN_RSA_BITS) -> PrivateKey | bytes:
        """A fresh signing key (``rsa_bits``: the modulus size, for RSA only)."""

    @abstractmethod
    def sign(self, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
        """The JWS signature of ``signing_input`` with a key that passed ``check_private_key``."""

    @abstractmethod
    def verify(self, material: Any, signing_input: bytes, signature: bytes) -> None:
        """Raise (anything) unless ``signature`` verifies; ``material`` passed ``fits``."""

    def jws_signature(self, kms_signature: bytes) -> bytes:
        """The JWS form of a signature KMS returned (ECDSA: DER to raw ``r || s``)."""
        return kms_signature

    def __repr__(self) -> str:
        return f"Algorithm({self.name!r})"


class RsaAlgorithm(Algorithm):
    """RSASSA-PKCS1-v1_5 (RFC 7518 §3.3)."""

    family = "RSA"
    kty = "RSA"

    def __init__(self, name: str, hash_algorithm: hashes.HashAlgorithm, **entry: Any) -> None:
        super().__init__(name, **entry)
        self._hash = hash_algorithm
        self._padding = padding.PKCS1v15()  # stateless: built once, not per verification

    def check_numbers(self, n: int, e: int, fail: Fail = _invalid_key) -> None:
        """The modulus and exponent, before a key is even built from them."""
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS or n % 2 == 0:
            raise fail(f"'n' must be an odd modulus of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
        # e > 1 and odd (e = 1 makes the "signature" the message); below 2**256 as NIST asks.
        if e <= 1 or e % 2 == 0 or e.bit_length() > 256 or e >= n:
            raise fail("'e' must be an odd exponent greater than 1 and below 2**256")
        if has_roca_fingerprint(n):
            raise fail("'n' has the ROCA fingerprint (CVE-2017-15361); replace the key")

    def check_public_key(self, key: object, fail: Fail = _invalid_key) -> None:
        if not isinstance(key, rsa.RSAPublicKey):
            raise fail(f"the key does not fit alg {self.name}")
        numbers = key.public_numbers()
        self.check_numbers(numbers.n, numbers.e, fail)

    def fits(self, material: object) -> bool:
        return isinstance(material, rsa.RSAPublicKey) and material.key_size >= MIN_RSA_BITS

    def generate(self, *, rsa_bits: int = MIN_RSA_BITS) -> PrivateKey | bytes:
        if not MIN_RSA_BITS <= rsa_bits <= MAX_RSA_BITS:
            raise InvalidKeyMaterial(f"rsa_bits must be {MIN_RSA_BITS} to {MAX_RSA_BITS}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        # OpenSSL is not Infineon; this loop runs once except with probability ~4e-9, and
        # guarantees we never write a key our own checks would refuse.
        while has_roca_fingerprint(key.public_key().public_numbers().n):
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        return key

    def sign(self, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidKeyMaterial(f"the key does not fit alg {self.name}")
        return key.sign(signing_input, self._padding, self._hash)

    def verify(self, material: Any, signing_input: bytes, signature: bytes) -> None:
        material.verify(signature, signing_input, self._padding, self._hash)


class EcdsaAlgorithm(Algorithm):
    """ECDSA with the JWS signature encoding: raw ``r || s``, each half the size of the curve
    order (RFC 7518 §3.4); cryptography and KMS speak DER, converted at the edges."""

    family = "ECDSA"
    kty = "EC"
    crv: str

    def __init__(
        self,
        name: str,
        curve: ec.EllipticCurve,
        crv: str,
        hash_algorithm: hashes.HashAlgorithm,
        **entry: Any,
    ) -> None:
        super().__init__(name, **entry)
        self.curve = curve
        self.crv = crv
        # The size of a coordinate, of d, and of each half of a signature (32 for P-256).
        self.coordinate_bytes = (curve.key_size + 7) // 8
        self._ecdsa = ec.ECDSA(hash_algorithm)

    def check_public_key(self, key: object, fail: Fail = _invalid_key) -> None:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise fail(f"the key does not fit alg {self.name}")
        if key.curve.name != self.curve.name:
            raise fail(f"{self.name} needs a {self.crv} key")

    def fits(self, material: object) -> bool:
        return (
            isinstance(material, ec.EllipticCurvePublicKey)
            and material.curve.name == self.curve.name
        )

    def generate(self, *, rsa_bits: int = MIN_RSA_BITS) -> PrivateKey | bytes:
        return ec.generate_private_key(self.curve)

    def sign(self, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidKeyMaterial(f"the key does not fit alg {self.name}")
        return self.raw_from_der(key.sign(signing_input, self._ecdsa))

    def verify(self, material: Any, signing_input: bytes, signature: bytes) -> None:
        half = self.coordinate_bytes
        if len(signature) != 2 * half:
            raise InvalidSignature("ECDSA signature has the wrong length")
        r = int.from_bytes(signature[:half], "big")
        s = int.from_bytes(signature[half:], "big")
        material.verify(encode_dss_signature(r, s), signing_input, self._ecdsa)

    def jws_signature(self, kms_signature: bytes) -> bytes:
        return self.raw_from_der(kms_signature)

    def raw_from_der(self, der: bytes) -> bytes:
        """DER ``ECDSA-Sig-Value`` to raw ``r || s``; see :func:`der_to_raw_ecdsa`."""
        return der_to_raw_ecdsa(der, self.coordinate_bytes)


class Ed25519Algorithm(Algorithm):
    """EdDSA with Ed25519 (RFC 8037)."""

    family = "EdDSA"
    kty = "OKP"
    crv = "Ed25519"
    key_bytes = 32

    def check_public_key(self, key: object, fail: Fail = _invalid_key) -> None:
        if not isinstance(key, Ed25519PublicKey):
            raise fail(f"the key does not fit alg {self.name}")

    def fits(self, material: object) -> bool:
        return isinstance(material, Ed25519PublicKey)

    def generate(self, *, rsa_bits: int = MIN_RSA_BITS) -> PrivateKey | bytes:
        return Ed25519PrivateKey.generate()

    def sign(self, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidKeyMaterial(f"the key does not fit alg {self.name}")
        return key.sign(signing_input)

    def verify(self, material: Any, signing_input: bytes, signature: bytes) -> None:
        material.verify(signature, signing_input)


class HmacAlgorithm(Algorithm):
    """HMAC (RFC 7518 §3.2), compared in constant time; the key is the raw secret."""

    family = "HMAC"
    kty = "oct"

    def __init__(self, name: str, digest: str, **entry: Any) -> None:
        super().__init__(name, **entry)
        self._digest = digest

    def check_public_key(self, key: object, fail: Fail = _invalid_key) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_HMAC_KEY_BYTES:
            raise fail(f"{self.name} needs a secret of at least {MIN_HMAC_KEY_BYTES} bytes")

    def check_private_key(self, key: object, fail: Fail = _invalid_key) -> None:
        self.check_public_key(key, fail)

    def fits(self, material: object) -> bool:
        return isinstance(material, bytes) and len(material) >= MIN_HMAC_KEY_BYTES

    def generate(self, *, rsa_bits: int = MIN_RSA_BITS) -> PrivateKey | bytes:
        return secrets.token_bytes(MIN_HMAC_KEY_BYTES)

    def sign(self, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
        if not isinstance(key, bytes):
            raise InvalidKeyMaterial(f"the key does not fit alg {self.name}")
        return hmac.new(key, signing_input, self._digest).digest()

    def verify(self, material: Any, signing_input: bytes, signature: bytes) -> None:
        expected = hmac.new(material, signing_input, self._digest).digest()
        if not hmac.compare_digest(expected, signature):
            raise InvalidSignature("signature does not verify")


# --- the registry -----------------------------------------------------------------------------


class Registry:
    """The known algorithms by name, and every allow-list derived from them."""

    def __init__(self, entries: Iterable[Algorithm]) -> None:
        self._by_name: dict[str, Algorithm] = {}
        for entry in entries:
            if entry.name in self._by_name:
                raise ValueError(f"algorithm {entry.name} is registered twice")
            if entry.purpose is not None and entry.symmetric != (entry.purpose == "refresh"):
                # Disjoint sets are what keeps a refresh token from ever verifying as an access
                # token: access keys are published, so they must be asymmetric.
                raise ValueError(f"algorithm {entry.name} does not fit purpose {entry.purpose}")
            self._by_name[entry.name] = entry
        self.names: frozenset[str] = frozenset(self._by_name)
        self._purposes: dict[KeyPurpose, tuple[str, ...]] = {
            purpose: tuple(e.name for e in self._by_name.values() if e.purpose == purpose)
            for purpose in ("access", "refresh")
        }
        self._sets = {purpose: frozenset(names) for purpose, names in self._purposes.items()}
        # Keys checked by fits(), by identity. The entry holds the key itself, so an id cannot
        # be reused by another object while it is cached; bounded, since keys come and go with
        # rotations (clearing only costs a re-check).
        self._fitting: dict[int, JwsKey] = {}

    def __iter__(self) -> Iterator[Algorithm]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Algorithm:
        return self._by_name[name]

    def get(self, name: object) -> Algorithm | None:
        return self._by_name.get(name) if isinstance(name, str) else None

    def for_purpose(self, purpose: KeyPurpose) -> tuple[str, ...]:
        """The algorithms a key set of ``purpose`` may hold, in registry order."""
        return self._purposes[purpose]

    def allowed(self, purpose: KeyPurpose) -> frozenset[str]:
        """``for_purpose`` as a set (the verify path's allow-lists)."""
        return self._sets[purpose]

    def for_key_set(self, name: object) -> Algorithm | None:
        """The entry for ``name`` if a key set may hold it (access or refresh), else None."""
        entry = self.get(name)
        return entry if entry is not None and entry.purpose is not None else None

    def for_kms_key_spec(self, spec: object) -> Algorithm | None:
        """The access algorithm a KMS key of ``spec`` signs (RSA_2048 -> RS256, ...)."""
        for entry in self._by_name.values():
            if entry.purpose == "access" and spec in entry.kms_key_specs:
                return entry
        return None

    def for_curve(self, curve_name: str) -> Algorithm | None:
        """The key-set ECDSA entry for a cryptography curve name ("secp256r1" -> ES256)."""
        for entry in self._by_name.values():
            if (
                isinstance(entry, EcdsaAlgorithm)
                and entry.purpose is not None
                and entry.curve.name == curve_name
            ):
                return entry
        return None

    def verify_signature(self, key: JwsKey, signing_input: bytes, signature: bytes) -> None:
        """Raise InvalidSignature unless ``signature`` over ``signing_input`` verifies with
        ``key``, under the algorithm the key is bound to."""
        entry = self._by_name.get(key.alg)
        if entry is None:
            raise AlgorithmNotAllowed(f"algorithm {key.alg!r} is not supported")
        self._check_fits(key, entry)
        if not signature:
            raise InvalidSignature("empty signature")
        try:
            entry.verify(key.key, signing_input, signature)
        except InvalidSignature:
            raise
        except Exception as exc:  # cryptography's InvalidSignature, or a malformed signature
            raise InvalidSignature("signature could not be verified") from exc

    def _check_fits(self, key: JwsKey, entry: Algorithm) -> None:
        if self._fitting.get(id(key)) is key:
            return
        if not entry.fits(key.key):
            raise AlgorithmNotAllowed(f"key {key.kid!r} does not fit algorithm {entry.name}")
        if len(self._fitting) >= _MAX_FITTING_KEYS:
            self._fitting.clear()
        self._fitting[id(key)] = key


_MAX_FITTING_KEYS: Final = 64

ALGORITHMS: Final = Registry(
    (
        RsaAlgorithm(
            "RS256",
            hashes.SHA256(),
            purpose="access",
            kms_signing_algorithm="RSASSA_PKCS1_V1_5_SHA_256",
            kms_key_specs=("RSA_2048", "RSA_3072", "RSA_4096"),
        ),
        EcdsaAlgorithm(
            "ES256",
            ec.SECP256R1(),
            "P-256",
            hashes.SHA256(),
            purpose="access",
            kms_signing_algorithm="ECDSA_SHA_256",
            kms_key_specs=("ECC_NIST_P256",),
        ),
        Ed25519Algorithm("EdDSA", purpose="access"),
        HmacAlgorithm("HS256", "sha256", purpose="refresh"),
        # For the public JOSE vectors only (RFC 7520 §4.3): no key set may hold it, so it only
        # ever runs with a P-521 key deliberately bound to it, and never for a token of ours.
        EcdsaAlgorithm("ES512", ec.SECP521R1(), "P-521", hashes.SHA512(), purpose=None),
    )
)


# ACCESS_TOKEN_ALG's default (every JOSE library verifies it), and the one refresh algorithm.
DEFAULT_ACCESS_ALGORITHM: Final[AccessAlgorithm] = "RS256"
REFRESH_ALGORITHM: Final = "HS256"


def verify_signature(key: JwsKey, signing_input: bytes, signature: bytes) -> None:
    """:meth:`Registry.verify_signature` of :data:`ALGORITHMS`."""
    ALGORITHMS.verify_signature(key, signing_input, signature)


def der_to_raw_ecdsa(der: bytes, size: int = 32) -> bytes:
    """Convert a DER ``ECDSA-Sig-Value`` to the JWS form ``r || s`` of ``size`` bytes each.

    ``cryptography``'s ``decode_dss_signature`` reads strict DER only (minimal lengths, minimal
    non-negative integers, no trailing bytes); r and s must also lie in [1, 2**(8*size)). Range
    against the curve order is the verifier's job. Anything else raises KeyUnavailable: the
    signature came from our own key or from KMS, so a bad one is a fault on our side, never
    something to repair.
    """
    if size < 1:
        raise KeyUnavailable("ECDSA signature size must be positive")
    try:
        r, s = decode_dss_signature(der)
    except ValueError as exc:
        raise KeyUnavailable("ECDSA signature is not strict DER") from exc
    limit = 1 << (8 * size)
    if not (0 < r < limit and 0 < s < limit):
        raise KeyUnavailable("ECDSA signature value is out of range")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# ROCA (CVE-2017-15361): a modulus from the flawed Infineon generator is, modulo each of these
# primes, a power of 65537. A sound modulus passes all 38 tests with probability about 4e-9.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
    73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip
_ROCA_GENERATOR = 65537


@functools.cache
def _roca_powers() -> tuple[tuple[int, frozenset[int]], ...]:
    table = []
    for prime in _ROCA_PRIMES:
        powers: set[int] = set()
        power = 1
        while power not in powers:
            powers.add(power)
            power = power * _ROCA_GENERATOR % prime
        table.append((prime, frozenset(powers)))
    return tuple(table)


def has_roca_fingerprint(modulus: int) -> bool:
    """True if ``modulus`` has the ROCA fingerprint (a key from the flawed Infineon generator)."""
    return all(modulus % prime in powers for prime, powers in _roca_powers())


__all__ = [
    "ALGORITHMS",
    "DEFAULT_ACCESS_ALGORITHM",
    "MAX_RSA_BITS",
    "MIN_HMAC_KEY_BYTES",
    "MIN_RSA_BITS",
    "REFRESH_ALGORITHM",
    "AccessAlgorithm",
    "Algorithm",
    "EcdsaAlgorithm",
    "Ed25519Algorithm",
    "Fail",
    "Family",
    "HmacAlgorithm",
    "JwsKey",
    "KeyPurpose",
    "PrivateKey",
    "PublicKey",
    "Registry",
    "RotatingSigner",
    "RsaAlgorithm",
    "Signer",
    "der_to_raw_ecdsa",
    "has_roca_fingerprint",
    "pinned",
    "verify_signature",
]
