"""Minting access and refresh tokens through a Signer (a local key or KMS).

The compact JWS is assembled here rather than by ``jwt.encode`` because a KMS key never
leaves KMS: the signer only ever sees the signing input. Minting is deterministic for a given
input (RS256, EdDSA and HS256 signatures are), which lets the refresher hand back the very same
successor refresh token when the previous one is replayed inside the grace window.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokencore.errors import SigningKeyChanged
from tokencore.keys.model import Signer, pinned
from tokencore.tokens.claims import (
    CLAIM_FINGERPRINT,
    CLAIM_GENERATION,
    CLAIM_SECURITY_LEVEL,
    CLAIM_TOKEN_USE,
    TYP_BY_USE,
    TokenUse,
)
from tokencore.tokens.codec import b64url_encode, json_compact

_ACCESS_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
_REFRESH_ALGORITHMS = frozenset({"HS256"})


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


def mint_access_token(
    signer: Signer,
    *,
    issuer: str,
    audience: str,
    subject: str,
    session_id: str,
    roles: Sequence[str],
    now: float,
    ttl_seconds: int,
    email: str | None = None,
    fingerprint_hash: str | None = None,
    security_level: str | None = None,
    token_id: str | None = None,
) -> MintedToken:
    if signer.alg not in _ACCESS_ALGORITHMS:
        raise ValueError("access tokens are signed with an asymmetric key only")
    issued_at = int(now)
    token_id = token_id or new_token_id()
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "sid": session_id,
        "jti": token_id,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        CLAIM_TOKEN_USE: TokenUse.ACCESS.value,
        "roles": list(roles),
    }
    if email:
        claims["email"] = email
    if fingerprint_hash:
        claims[CLAIM_FINGERPRINT] = fingerprint_hash
    if security_level:
        claims[CLAIM_SECURITY_LEVEL] = security_level
    return MintedToken(
        _compact(signer, TokenUse.ACCESS, claims), token_id, issued_at, issued_at + ttl_seconds
    )


def mint_refresh_token(
    signer: Signer,
    *,
    issuer: str,
    subject: str,
    session_id: str,
    token_id: str,
    generation: int,
    issued_at: float,
    expires_at: float,
) -> MintedToken:
    """A refresh token names its session, its own id and generation, and nothing else about the
    user: roles and email are re-read from the user record at every refresh."""
    if signer.alg not in _REFRESH_ALGORITHMS:
        raise ValueError("refresh tokens are signed with the refresh HMAC key only")
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": issuer,
        "sub": subject,
        "sid": session_id,
        "jti": token_id,
        "iat": int(issued_at),
        "exp": int(expires_at),
        CLAIM_TOKEN_USE: TokenUse.REFRESH.value,
        CLAIM_GENERATION: generation,
    }
    return MintedToken(
        _compact(signer, TokenUse.REFRESH, claims), token_id, int(issued_at), int(expires_at)
    )
