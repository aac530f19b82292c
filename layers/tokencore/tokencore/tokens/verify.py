"""The one place that decodes tokens.

Checks run cheapest and most hostile-input-proof first: the string's size and alphabet, the
header (allow-listed parameters, the registry's algorithms), the key by ``kid`` (which decides
the algorithm), the signature, and only then the payload and its claims. docs/authorizer.md
"The verification order" writes the steps out. Nothing but ``tokencore.errors`` escapes: every
library failure on hostile input becomes a rejection, and a key-store failure stays a
``ServiceFault``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from tokencore.config import Settings
from tokencore.errors import (
    AlgorithmNotAllowed,
    ExpiredToken,
    InvalidClaim,
    MalformedToken,
    MissingClaim,
    TokenCoreError,
    TokenNotYetValid,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
    WrongTokenType,
)
from tokencore.jose.algorithms import ALGORITHMS, JwsKey, verify_signature
from tokencore.jose.codec import decode_segment, is_valid_kid, json_object
from tokencore.tokens.claims import (
    CLAIM_TOKEN_USE,
    REQUIRED_CLAIMS,
    TYP_BY_USE,
    AccessClaims,
    RefreshClaims,
    TokenUse,
    identifier,
    numeric_date,
)

# Our access tokens are under 1 KB; 8 KB leaves room for many roles and refuses abuse early.
MAX_TOKEN_LENGTH = 8192
ALLOWED_HEADER_PARAMETERS = frozenset({"alg", "kid", "typ"})


class KeyLookup(Protocol):
    """Finds a verification key by kid (a KeyRing, or a fixed set in tests)."""

    def get(self, kid: str) -> JwsKey: ...


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    issuer: str
    audience: str
    leeway_seconds: int

    @classmethod
    def for_access(cls, settings: Settings) -> VerifyOptions:
        return cls(
            settings.token_issuer, settings.token_audience, settings.clock_skew_leeway_seconds
        )

    @classmethod
    def for_refresh(cls, settings: Settings) -> VerifyOptions:
        # Refresh tokens are for the issuer alone: their audience is the issuer itself.
        return cls(settings.token_issuer, settings.token_issuer, settings.clock_skew_leeway_seconds)


@dataclass(frozen=True, slots=True)
class VerifiedJws:
    header: dict[str, Any]
    payload: bytes
    key: JwsKey


def verify_jws(
    token: object,
    keys: KeyLookup,
    *,
    algorithms: Collection[str] = ALGORITHMS.names,
    allowed_header: Collection[str] = ALLOWED_HEADER_PARAMETERS,
) -> VerifiedJws:
    """Verify a compact JWS and return its header and payload bytes (no claim checks)."""
    allowed = allowed_header if isinstance(allowed_header, frozenset) else frozenset(allowed_header)
    return VerifiedJws(*_checked_jws(token, keys, algorithms, allowed))


def _checked_jws(
    token: object, keys: KeyLookup, algorithms: Collection[str], allowed_header: frozenset[str]
) -> tuple[dict[str, Any], bytes, JwsKey]:
    """``verify_jws`` as a tuple (the access path builds no VerifiedJws); nothing but
    ``tokencore.errors`` escapes."""
    try:
        return _verify_jws(token, keys, algorithms, allowed_header)
    except TokenCoreError:
        raise
    except Exception as exc:
        raise MalformedToken("token could not be parsed") from exc


def _verify_jws(
    token: object,
    keys: KeyLookup,
    algorithms: Collection[str],
    allowed_header: frozenset[str],
) -> tuple[dict[str, Any], bytes, JwsKey]:
    if not isinstance(token, str):
        raise MalformedToken("token is not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenTooLarge("token is too large")
    # Three non-empty segments of the base64url alphabet: deleting every alphabet byte must
    # leave exactly the two dots (one C pass; a regular expression costs three times as much).
    # A non-ASCII character fails the encode.
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise MalformedToken("token is not a compact JWS") from exc
    if raw.translate(None, _B64URL_BYTES) != b"..":
        raise MalformedToken("token is not a compact JWS")
    header_segment, payload_segment, signature_segment = raw.split(b".")
    if not (header_segment and payload_segment and signature_segment):
        raise MalformedToken("token is not a compact JWS")
    # Every segment is in the base64url alphabet now: each only needs the length and
    # trailing-bit checks of a canonical encoding (codec.decode_segment).

    header, kid_ok = _parsed_header(header_segment, allowed_header)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AlgorithmNotAllowed("algorithm is not allowed")
    if not kid_ok:
        raise UnknownKey("kid is missing or malformed")

    key = keys.get(header["kid"])
    if key.alg != alg:
        # The key decides the algorithm; a header that disagrees is an attack (RFC 8725 §3.1).
        raise AlgorithmNotAllowed("algorithm does not match the key")

    signature = decode_segment(signature_segment)
    verify_signature(key, raw[: len(header_segment) + 1 + len(payload_segment)], signature)
    return header, decode_segment(payload_segment), key


_B64URL_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Every token a key signs carries the same header segment, so its parse is remembered: the
# strict decode, the duplicate-member check, the allow-list and the kid grammar run once per
# (segment, allowed parameters) instead of once per token. Only headers that passed the
# allow-list are kept, the cache is bounded (cleared when full: a flood of distinct headers
# only costs their parse), and callers get a copy, never the cached dict.
_HEADER_CACHE: dict[tuple[bytes, frozenset[str]], tuple[dict[str, Any], bool]] = {}
_HEADER_CACHE_SIZE = 64
_HEADER_CACHE_MAX_SEGMENT = 512  # ours are under 150 characters


def _parsed_header(segment: bytes, allowed: frozenset[str]) -> tuple[dict[str, Any], bool]:
    """The header and whether its kid is acceptable (checked after the algorithm)."""
    cache_key = (segment, allowed)
    cached = _HEADER_CACHE.get(cache_key)
    if cached is not None:
        return dict(cached[0]), cached[1]
    header = json_object(decode_segment(segment))
    unexpected = header.keys() - allowed
    if unexpected:
        raise UnsupportedHeader("header has unsupported parameters")
    parsed = header, is_valid_kid(header.get("kid"))
    if len(segment) <= _HEADER_CACHE_MAX_SEGMENT:
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[cache_key] = parsed
    return dict(header), parsed[1]


def verify_access_token(
    token: object, keys: KeyLookup, options: VerifyOptions, now: float
) -> AccessClaims:
    """Verify an access token: asymmetric key, typ at+jwt, token_use access, every claim."""
    return verify_access_token_and_key(token, keys, options, now)[0]


def verify_access_token_and_key(
    token: object, keys: KeyLookup, options: VerifyOptions, now: float
) -> tuple[AccessClaims, JwsKey]:
    """``verify_access_token``, plus the key that verified it (for ``tokencore.claimscache``,
    which must notice when the key ring stops serving that key)."""
    header, payload, key = _checked_jws(token, keys, _ACCESS_ALGORITHMS, ALLOWED_HEADER_PARAMETERS)
    claims = _verified_claims(header, payload, key, TokenUse.ACCESS, options, now)
    return _typed(AccessClaims, claims), key


def verify_refresh_token(
    token: object, keys: KeyLookup, options: VerifyOptions, now: float
) -> RefreshClaims:
    """Verify a refresh token: HMAC key of the refresh key set, typ rt+jwt, token_use refresh."""
    header, payload, key = _checked_jws(token, keys, _REFRESH_ALGORITHMS, ALLOWED_HEADER_PARAMETERS)
    claims = _verified_claims(header, payload, key, TokenUse.REFRESH, options, now)
    return _typed(RefreshClaims, claims)


_ACCESS_ALGORITHMS = ALGORITHMS.allowed("access")
_REFRESH_ALGORITHMS = ALGORITHMS.allowed("refresh")


def _typed[C: (AccessClaims, RefreshClaims)](kind: type[C], claims: dict[str, Any]) -> C:
    """The claims value, through the type's rule table; nothing but a rejection escapes."""
    try:
        return kind.from_payload(claims, standard_checked=True)
    except TokenCoreError:
        raise
    except Exception as exc:
        raise InvalidClaim("claims are malformed") from exc


def _verified_claims(
    header: dict[str, Any],
    payload: bytes,
    key: JwsKey,
    use: TokenUse,
    options: VerifyOptions,
    now: float,
) -> dict[str, Any]:
    # A refresh key can never verify an access token and the reverse: the algorithm sets are
    # disjoint, the key sets are separate, and the typ header and token_use claim must match.
    # (``use`` is a StrEnum: compared as the plain string it is, hashed through the tables
    # below, since an enum's own hash and .value are Python calls.)
    if _PURPOSE_BY_ALG.get(key.alg) != use:
        raise WrongTokenType("key is not of this token's kind")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPS[str(use)]:
        raise WrongTokenType("typ header does not match the token kind")
    claims = json_object(payload)
    if not claims.keys() >= _REQUIRED_NAMES:
        missing = next(name for name in REQUIRED_CLAIMS if name not in claims)
        raise MissingClaim(f"claim {missing} is required")
    if claims[CLAIM_TOKEN_USE] != use:
        raise WrongTokenType("token_use does not match")
    if claims["iss"] != options.issuer:
        raise InvalidClaim("issuer does not match")
    audience = claims["aud"]
    if audience != options.audience:
        if not (
            isinstance(audience, list)
            and all(isinstance(item, str) for item in audience)
            and options.audience in audience
        ):
            raise InvalidClaim("audience does not match")
        # The claims value holds the one audience that matched (ours).
        claims["aud"] = options.audience
    identifier("sub", claims["sub"])
    identifier("jti", claims["jti"])
    identifier("sid", claims["sid"])
    _validate_times(claims, options, now)
    return claims


_PURPOSE_BY_ALG = {entry.name: entry.purpose for entry in ALGORITHMS}
# The typ header of each kind, compared case-insensitively, with or without "application/".
_TYPS = {str(use): frozenset({typ, "application/" + typ}) for use, typ in TYP_BY_USE.items()}
_REQUIRED_NAMES = frozenset(REQUIRED_CLAIMS)


def _validate_times(claims: dict[str, Any], options: VerifyOptions, now: float) -> None:
    leeway = options.leeway_seconds
    expires_at = numeric_date("exp", claims["exp"])
    issued_at = numeric_date("iat", claims["iat"])
    claims["exp"], claims["iat"] = expires_at, issued_at
    # Valid while now < exp + leeway: at exactly exp + leeway the token is expired.
    if now >= expires_at + leeway:
        raise ExpiredToken("token has expired")
    if issued_at > now + leeway:
        raise TokenNotYetValid("token was issued in the future")
    if "nbf" in claims and numeric_date("nbf", claims["nbf"]) > now + leeway:
        raise TokenNotYetValid("token is not valid yet")
