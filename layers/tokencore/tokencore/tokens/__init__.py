"""Tokens: the claims types (``claims.py``: to and from payload, one rule table per type),
minting and verifying. Signatures and encodings are ``tokencore.jose``'s, which this package
builds on (never on ``tokencore.keys``); PyJWT is not imported, which keeps it off the
authorizer's cold start."""

from tokencore.tokens.claims import ACCESS_TYP, REFRESH_TYP, AccessClaims, RefreshClaims, TokenUse
from tokencore.tokens.fingerprint import fingerprint_hash, fingerprint_matches, new_fingerprint
from tokencore.tokens.mint import MintedToken, mint_access_token, mint_refresh_token, new_token_id
from tokencore.tokens.verify import (
    MAX_TOKEN_LENGTH,
    KeyLookup,
    VerifiedJws,
    VerifyOptions,
    verify_access_token,
    verify_access_token_and_key,
    verify_jws,
    verify_refresh_token,
)

__all__ = [
    "ACCESS_TYP",
    "MAX_TOKEN_LENGTH",
    "REFRESH_TYP",
    "AccessClaims",
    "KeyLookup",
    "MintedToken",
    "RefreshClaims",
    "TokenUse",
    "VerifiedJws",
    "VerifyOptions",
    "fingerprint_hash",
    "fingerprint_matches",
    "mint_access_token",
    "mint_refresh_token",
    "new_fingerprint",
    "new_token_id",
    "verify_access_token",
    "verify_access_token_and_key",
    "verify_jws",
    "verify_refresh_token",
]
