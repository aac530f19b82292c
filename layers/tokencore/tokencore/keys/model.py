"""What a key is, independent of where it lives (Secrets Manager, KMS, a JWKS document).

A key is bound to exactly one algorithm when it is loaded; the algorithm a token's header
names is only ever compared against that binding, never used to choose how to verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

PublicKey = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey

# Algorithms we sign access tokens with, and the one we sign refresh tokens with.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
SYMMETRIC_ALGORITHMS = frozenset({"HS256"})

KeyPurpose = Literal["access", "refresh"]


class KeyStatus(StrEnum):
    """Lifecycle of a key: published before it signs, published after it stops signing."""

    NEXT = "next"  # published in the JWKS, not yet signing
    ACTIVE = "active"  # signs new tokens; exactly one per key set
    RETIRED = "retired"  # no longer signs; still verifies until its last token expires


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key that verifies one algorithm.

    ``key`` is a cryptography public key for asymmetric algorithms, or the raw secret bytes
    for HS256 (refresh tokens only; such keys are never published).
    """

    kid: str
    alg: str
    key: PublicKey | bytes
    status: KeyStatus = KeyStatus.ACTIVE

    @property
    def is_symmetric(self) -> bool:
        return self.alg in SYMMETRIC_ALGORITHMS

    def __repr__(self) -> str:  # never print key material
        return f"VerificationKey(kid={self.kid!r}, alg={self.alg!r}, status={self.status.value})"


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


class KeySource(Protocol):
    """Where verification keys come from (a secret, KMS, a published JWKS, the environment)."""

    def load_verification_keys(self) -> list[VerificationKey]:
        """Every key that may verify now. Raises KeyUnavailable on I/O failure."""
        ...
