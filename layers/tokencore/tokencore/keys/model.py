"""What a key is, independent of where it lives (Secrets Manager, KMS, a JWKS document).

A key is bound to exactly one algorithm when it is loaded; the algorithm a token's header
names is only ever compared against that binding, never used to choose how to verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tokencore.jose.algorithms import ALGORITHMS, JwsKey, PublicKey

__all__ = ["KeySource", "KeyStatus", "VerificationKey"]


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
        entry = ALGORITHMS.get(self.alg)
        return entry is not None and entry.symmetric

    def __repr__(self) -> str:  # never print key material
        return f"VerificationKey(kid={self.kid!r}, alg={self.alg!r}, status={self.status.value})"


class KeySource(Protocol):
    """Where verification keys come from (a secret, KMS, a published JWKS, the environment)."""

    def load_verification_keys(self) -> list[VerificationKey]:
        """Every key that may verify now. Raises KeyUnavailable on I/O failure."""
        ...


if TYPE_CHECKING:  # mypy checks that VerificationKey is what the signature layer verifies with
    _JWS_KEY: type[JwsKey] = VerificationKey
