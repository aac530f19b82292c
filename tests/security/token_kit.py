"""What the attacks on token verification share (test_token_attacks_*.py, one file per group of
categories): the constants, and building tokens by hand.

Every token here is built by hand (``forge``) from explicit header and payload dicts or raw
bytes, so each attack is visible in the test. Each case asserts the specific ``TokenRejected``
subclass; the property tests at the end assert that nothing outside ``tokencore.errors`` ever
escapes and that a mutated token never verifies.

Layer exercised: the public entry points ``verify_access_token`` / ``verify_refresh_token``
(and ``verify_jws`` where the attack is below the claims), with keys generated at test time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from tokencore.config import Settings
from tokencore.jose.codec import b64url_encode
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner
from tokencore.tokens import (
    ACCESS_TYP,
    REFRESH_TYP,
    VerifyOptions,
)

NOW = 1_800_000_000
ISSUER = "https://auth.example.com"
AUDIENCE = "tokencore-api"
SETTINGS = Settings(token_issuer=ISSUER, token_audience=AUDIENCE)
LEEWAY = SETTINGS.clock_skew_leeway_seconds
ACCESS = VerifyOptions.for_access(SETTINGS)
REFRESH = VerifyOptions.for_refresh(SETTINGS)
# The order of the P-256 group (SEC 2 / FIPS 186-4).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

DROP = object()  # a claim or header value meaning "leave it out" (both attack suites)
Part = Mapping[str, Any] | bytes


# --- building tokens by hand ---------------------------------------------------------------


def segment(part: Part) -> str:
    """base64url of a dict's compact JSON, or of raw bytes exactly as given."""
    raw = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return b64url_encode(raw)


def forge(
    header: Part,
    payload: Part,
    *,
    signer: LocalSigner | None = None,
    secret: bytes | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact JWS: signed by ``signer``, or HMAC-SHA256 with ``secret``, or carrying the
    given raw ``signature`` bytes (b"" gives an empty third segment)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    if signature is None:
        if signer is not None:
            signature = signer.sign(signing_input.encode("ascii"))
        elif secret is not None:
            signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        else:
            raise ValueError("forge needs a signer, a secret or a signature")
    return f"{signing_input}.{b64url_encode(signature)}"


def header_of(entry: PrivateKeyEntry, typ: object = ACCESS_TYP, **extra: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": entry.alg, "kid": entry.kid, "typ": typ}
    header.update(extra)
    return {name: value for name, value in header.items() if value is not DROP}


def apply_changes(claims: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``claims`` with ``changes`` applied in place: a ``DROP`` value removes the member."""
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def access_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "jti-1",
        "iat": NOW,
        "exp": NOW + 900,
        "token_use": "access",
        "roles": ["user"],
    }
    return apply_changes(claims, changes)


def refresh_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "rt-1",
        "iat": NOW,
        "exp": NOW + 3600,
        "token_use": "refresh",
        "gen": 0,
    }
    return apply_changes(claims, changes)


def access_token(entry: PrivateKeyEntry, **changes: Any) -> str:
    return forge(header_of(entry), access_claims(**changes), signer=LocalSigner(entry))


def refresh_token(entry: PrivateKeyEntry, **changes: Any) -> str:
    return forge(
        header_of(entry, REFRESH_TYP), refresh_claims(**changes), signer=LocalSigner(entry)
    )


def parts(token: str) -> list[str]:
    return token.split(".")


def with_signature(token: str, signature: bytes) -> str:
    header, payload, _ = parts(token)
    return f"{header}.{payload}.{b64url_encode(signature)}"


ACCESS_ALGS = ["rs256", "es256", "eddsa"]
