"""Minting access and refresh tokens through a Signer (a local key or KMS).

A token is its claims value (``tokens.claims``) signed: the payload is ``to_payload()``, the
header names the signer's key and algorithm and the token's type. The compact JWS is assembled
here rather than by ``jwt.encode`` because a KMS key never leaves KMS: the signer only ever
sees the signing input. Minting is deterministic for a given input (RS256, EdDSA and HMAC
signatures are), which lets the refresher hand back the very same successor refresh token when
the previous one is replayed inside the grace window.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from tokencore.errors import SigningKeyChanged
from tokencore.jose.algorithms import ALGORITHMS, Signer, pinned
from tokencore.jose.codec import b64url_encode, json_compact
from tokencore.tokens.claims import TYP_BY_USE, AccessClaims, RefreshClaims, TokenClaims, TokenUse

# Why a signer is refused for a kind of token (the algorithm sets are disjoint).
_WRONG_SIGNER = {
    TokenUse.ACCESS: "access tokens are signed with an asymmetric key only",
    TokenUse.REFRESH: "refresh tokens are signed with the refresh HMAC key only",
}


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    token_id: str
    issued_at: int
    expires_at: int

    def __repr__(self) -> str:  # the token itself is a secret
        return f"MintedToken(token_id=<hidden>, expires_at={self.expires_at})"


def new_token_id() -> str:
    """128 random bits, url-safe: unguessable and short enough to keep tokens under 1 KB."""
    return secrets.token_urlsafe(16)


def mint_access_token(signer: Signer, claims: AccessClaims) -> MintedToken:
    """An access token: ``typ`` at+jwt, signed by an access (asymmetric) key."""
    return _mint(signer, claims)


def mint_refresh_token(signer: Signer, claims: RefreshClaims) -> MintedToken:
    """A refresh token: ``typ`` rt+jwt, signed by the refresh HMAC key."""
    return _mint(signer, claims)


def _mint(signer: Signer, claims: TokenClaims) -> MintedToken:
    use = claims.USE
    if signer.alg not in ALGORITHMS.allowed(use.value):
        raise ValueError(_WRONG_SIGNER[use])
    payload = claims.to_payload()
    token = _compact(signer, use, payload)
    return MintedToken(token, claims.token_id, payload["iat"], payload["exp"])


def _compact(signer: Signer, use: TokenUse, claims: dict[str, Any]) -> str:
    """One key for the whole token: the kid in the header is the key that signs. A signer whose
    key rotates is pinned first; if its key changed while signing, the token starts over once."""
    payload = b64url_encode(json_compact(claims))
    try:
        return _signed(pinned(signer), use, payload)
    except SigningKeyChanged:
        return _signed(pinned(signer), use, payload)


def _signed(key: Signer, use: TokenUse, payload: str) -> str:
    header = {"alg": key.alg, "kid": key.kid, "typ": TYP_BY_USE[use]}
    signing_input = f"{b64url_encode(json_compact(header))}.{payload}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"
