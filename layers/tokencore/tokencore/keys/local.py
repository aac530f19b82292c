"""Signing with key material held in memory, and generating such keys.

``LocalSigner`` produces JWS signatures: RS256 is RSASSA-PKCS1-v1_5 with SHA-256, ES256 is
ECDSA P-256 with SHA-256 in raw ``r || s`` form, EdDSA is Ed25519, HS256 is HMAC-SHA-256.
cryptography returns ECDSA signatures in DER, and so does KMS; :func:`der_to_raw_ecdsa` is the
one strict converter both use, so a malformed or BER-encoded signature can never become a JWS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokencore.errors import InvalidKeyMaterial, KeyUnavailable
from tokencore.keys.jwk import (
    MAX_RSA_BITS,
    MIN_HMAC_KEY_BYTES,
    MIN_RSA_BITS,
    PrivateKey,
    PrivateKeyEntry,
    has_roca_fingerprint,
    key_thumbprint,
)
from tokencore.keys.model import KeyStatus, Signer

REFRESH_KID_PREFIX = "rt-"
_DER_SEQUENCE = 0x30
_DER_INTEGER = 0x02


class LocalSigner:
    """Signs with one in-memory key (implements the Signer protocol). Parse once, sign often."""

    __slots__ = ("_alg", "_key", "_kid")

    def __init__(self, entry: PrivateKeyEntry) -> None:
        # PrivateKeyEntry has already checked that the key fits its algorithm.
        self._kid = entry.kid
        self._alg = entry.alg
        self._key: PrivateKey | bytes = entry.key

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def alg(self) -> str:
        return self._alg

    def sign(self, signing_input: bytes) -> bytes:
        key = self._key
        if isinstance(key, bytes):
            return hmac.new(key, signing_input, hashlib.sha256).digest()
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return der_to_raw_ecdsa(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return key.sign(signing_input)

    def __repr__(self) -> str:  # never print key material
        return f"LocalSigner(kid={self._kid!r}, alg={self._alg!r})"


def der_to_raw_ecdsa(der: bytes, size: int = 32) -> bytes:
    """Convert a DER ``ECDSA-Sig-Value`` to the JWS form ``r || s`` of ``size`` bytes each.

    Strict DER only: minimal lengths, minimal non-negative integers, no trailing bytes; r and s
    must lie in [1, 2**(8*size)). Range against the curve order is the verifier's job. Anything
    else raises KeyUnavailable: the signature came from our own key or from KMS, so a bad one
    is a fault on our side, never something to repair.
    """
    if size < 1:
        raise KeyUnavailable("ECDSA signature size must be positive")
    if len(der) < 2 or der[0] != _DER_SEQUENCE:
        raise KeyUnavailable("ECDSA signature is not a DER sequence")
    length, offset = _der_length(der, 1)
    if offset + length != len(der):
        raise KeyUnavailable("ECDSA signature has a wrong length or trailing bytes")
    r, offset = _der_integer(der, offset, size)
    s, offset = _der_integer(der, offset, size)
    if offset != len(der):
        raise KeyUnavailable("ECDSA signature has extra elements")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _der_length(der: bytes, offset: int) -> tuple[int, int]:
    """Read a definite DER length at ``offset``; return (length, offset after it)."""
    if offset >= len(der):
        raise KeyUnavailable("ECDSA signature is truncated")
    first = der[offset]
    offset += 1
    if first < 0x80:
        return first, offset
    count = first & 0x7F
    # 0 is BER's indefinite form; more than 2 octets would mean a signature over 64 KiB.
    if count == 0 or count > 2 or offset + count > len(der):
        raise KeyUnavailable("ECDSA signature has an invalid length")
    length = int.from_bytes(der[offset : offset + count], "big")
    if length < 0x80 or der[offset] == 0:
        raise KeyUnavailable("ECDSA signature has a non-minimal length")
    return length, offset + count


def _der_integer(der: bytes, offset: int, size: int) -> tuple[int, int]:
    if offset >= len(der) or der[offset] != _DER_INTEGER:
        raise KeyUnavailable("ECDSA signature element is not an INTEGER")
    length, offset = _der_length(der, offset + 1)
    end = offset + length
    if length == 0 or end > len(der):
        raise KeyUnavailable("ECDSA signature INTEGER is empty or truncated")
    body = der[offset:end]
    if body[0] & 0x80:
        raise KeyUnavailable("ECDSA signature INTEGER is negative")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise KeyUnavailable("ECDSA signature INTEGER is not minimally encoded")
    value = int.from_bytes(body, "big")
    if value == 0 or value.bit_length() > 8 * size:
        raise KeyUnavailable("ECDSA signature value is out of range")
    return value, end


def generate_key(
    alg: str, status: KeyStatus | str = KeyStatus.ACTIVE, *, rsa_bits: int = MIN_RSA_BITS
) -> PrivateKeyEntry:
    """A fresh key for ``alg``. Asymmetric kids are RFC 7638 thumbprints; HS256 kids are random
    (``rt-`` + 16 hex digits), since a hash of the refresh secret should not travel in headers."""
    try:
        key_status = KeyStatus(status)
    except ValueError as exc:
        raise InvalidKeyMaterial("status must be one of next, active, retired") from exc
    key: PrivateKey
    if alg == "HS256":
        kid = REFRESH_KID_PREFIX + secrets.token_hex(8)
        return PrivateKeyEntry(kid, alg, secrets.token_bytes(MIN_HMAC_KEY_BYTES), key_status)
    if alg == "RS256":
        if not MIN_RSA_BITS <= rsa_bits <= MAX_RSA_BITS:
            raise InvalidKeyMaterial(f"rsa_bits must be {MIN_RSA_BITS} to {MAX_RSA_BITS}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        # OpenSSL is not Infineon; this loop runs once except with probability ~4e-9, and
        # guarantees we never write a key our own parser would refuse.
        while has_roca_fingerprint(key.public_key().public_numbers().n):
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        key = Ed25519PrivateKey.generate()
    else:
        raise InvalidKeyMaterial(f"cannot generate keys for alg {alg!r}")
    return PrivateKeyEntry(key_thumbprint(key.public_key()), alg, key, key_status)


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SIGNER: type[Signer] = LocalSigner
