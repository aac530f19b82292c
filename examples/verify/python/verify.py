"""Verify a tokencore access token from another service, with PyJWT only (``pip install
PyJWT[crypto]``): the keys come from the issuer's discovery document and JWKS, fetched once
and cached by PyJWKClient, which refetches on an unknown ``kid`` (a key rotation).

    python verify.py https://auth.example.com tokencore-api < token.txt

Prints the verified claims as JSON, or exits 1 with the reason. What this does NOT check, and
how to get it: README "Other services verify our tokens" (fingerprint binding, revocation).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

import jwt

LEEWAY_SECONDS = 30  # CLOCK_SKEW_LEEWAY_SECONDS
ACCESS_TOKEN_TYPE = "at+jwt"  # refresh tokens are rt+jwt and must never pass here


class AccessTokenVerifier:
    """Configured once per process (issuer, audience, keys); ``verify`` per request."""

    def __init__(self, issuer: str, audience: str) -> None:
        discovery = _get_json(f"{issuer}/.well-known/openid-configuration")
        if discovery.get("issuer") != issuer:
            raise ValueError("the discovery document names another issuer")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(discovery["id_token_signing_alg_values_supported"])
        self.keys = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True, lifespan=300)

    def verify(self, token: str) -> dict[str, Any]:
        if jwt.get_unverified_header(token).get("typ") != ACCESS_TOKEN_TYPE:
            raise jwt.InvalidTokenError("not an access token")
        key = self.keys.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=self.algorithms,  # never taken from the token itself
            audience=self.audience,
            issuer=self.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "sub", "exp", "iat", "jti"]},
        )
        if claims.get("token_use") != "access":
            raise jwt.InvalidTokenError("not an access token")
        return claims


def _get_json(url: str) -> dict[str, Any]:
    if not url.startswith(("https://", "http://")):
        raise ValueError("the issuer must be an http(s) URL")
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - scheme checked above
        document: dict[str, Any] = json.load(answer)
    return document


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: verify.py ISSUER AUDIENCE < token", file=sys.stderr)
        return 2
    verifier = AccessTokenVerifier(argv[1], argv[2])
    try:
        claims = verifier.verify(sys.stdin.read().strip())
    except jwt.PyJWTError as exc:
        print(f"rejected: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
