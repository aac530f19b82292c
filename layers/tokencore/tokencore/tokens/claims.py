"""What a verified token says, as typed values. Token types are data: every token carries a
``token_use`` claim and a ``typ`` header, and each is checked on every verify."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TokenUse(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


# The JOSE ``typ`` header of each kind (RFC 9068 for access tokens; RFC 8725 §3.11 asks for
# explicit typing so one kind of JWT can never be substituted for another).
ACCESS_TYP = "at+jwt"
REFRESH_TYP = "rt+jwt"
TYP_BY_USE = {TokenUse.ACCESS: ACCESS_TYP, TokenUse.REFRESH: REFRESH_TYP}

# Claim names. ``fgp`` is the SHA-256 (base64url) of the fingerprint cookie (OWASP token
# sidejacking); ``acr`` the session's security level; ``gen`` the refresh generation.
CLAIM_TOKEN_USE = "token_use"
CLAIM_FINGERPRINT = "fgp"
CLAIM_SECURITY_LEVEL = "acr"
CLAIM_GENERATION = "gen"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    session_id: str
    token_id: str
    issuer: str
    audience: str
    issued_at: int
    expires_at: int
    roles: tuple[str, ...] = ()
    email: str | None = None
    fingerprint_hash: str | None = None
    security_level: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    subject: str
    session_id: str
    token_id: str
    generation: int
    issuer: str
    audience: str
    issued_at: int
    expires_at: int
