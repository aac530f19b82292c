"""Signing with key material held in memory, and generating such keys.

``LocalSigner`` produces JWS signatures with the algorithm its key is bound to; how each
algorithm signs (and that ECDSA signatures are raw ``r || s``, never DER) is the registry's
(``jose.algorithms``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from tokencore.errors import InvalidKeyMaterial
from tokencore.jose.algorithms import ALGORITHMS, MIN_RSA_BITS, Algorithm, PrivateKey, Signer
from tokencore.keys.jwk import PrivateKeyEntry, key_thumbprint
from tokencore.keys.model import KeyStatus

REFRESH_KID_PREFIX = "rt-"


class LocalSigner:
    """Signs with one in-memory key (implements the Signer protocol). Parse once, sign often."""

    __slots__ = ("_algorithm", "_key", "_kid")

    def __init__(self, entry: PrivateKeyEntry) -> None:
        # PrivateKeyEntry has already checked that the key fits its algorithm.
        self._kid = entry.kid
        self._algorithm: Algorithm = entry.algorithm
        self._key: PrivateKey | bytes = entry.key

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def alg(self) -> str:
        return self._algorithm.name

    def sign(self, signing_input: bytes) -> bytes:
        return self._algorithm.sign(self._key, signing_input)

    def __repr__(self) -> str:  # never print key material
        return f"LocalSigner(kid={self._kid!r}, alg={self.alg!r})"


def generate_key(
    alg: str, status: KeyStatus | str = KeyStatus.ACTIVE, *, rsa_bits: int = MIN_RSA_BITS
) -> PrivateKeyEntry:
    """A fresh key for ``alg`` (an algorithm a key set may hold). Asymmetric kids are RFC 7638
    thumbprints; HMAC kids are random (``rt-`` + 16 hex digits), since a hash of the refresh
    secret should not travel in headers."""
    try:
        key_status = KeyStatus(status)
    except ValueError as exc:
        raise InvalidKeyMaterial("status must be one of next, active, retired") from exc
    algorithm = ALGORITHMS.for_key_set(alg)
    if algorithm is None:
        raise InvalidKeyMaterial(f"cannot generate keys for alg {alg!r}")
    key = algorithm.generate(rsa_bits=rsa_bits)
    if isinstance(key, bytes):
        return PrivateKeyEntry(REFRESH_KID_PREFIX + secrets.token_hex(8), alg, key, key_status)
    return PrivateKeyEntry(key_thumbprint(key.public_key()), alg, key, key_status)


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SIGNER: type[Signer] = LocalSigner
