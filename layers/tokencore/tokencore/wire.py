"""The one reader of what a request carries: headers, the bearer token, cookies, and ids.

The authorizer (``authz``, ``functions/authorizer``), the HTTP edge (``http.request``) and the
stores (``sessions``, ``users``) all read these through here, with one set of bounds, so two
parsers can never disagree about one input (how bypasses start). Where the two parsers it
replaced disagreed, the stricter rule won: a header sent twice is no value, a repeated
``__Host-`` cookie counts as absent, any other repeated cookie is its first occurrence. Light on
purpose: the authorizer's fast path imports it, so it imports nothing but ``re`` and the error
tree. docs/architecture.md ("The one parser") states every rule and bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final, cast

from tokencore.errors import MalformedToken

# --- ids -----------------------------------------------------------------------------------------

ID_MAX_CHARS: Final = 128
DEVICE_ID_MAX_CHARS: Final = 128
# Patterns as text, compiled on first use (re's own cache) rather than at import: the
# authorizer's cold start needs none of them. Session ids and token ids are 22 url-safe
# characters when we make them; the wider set is what the session store has always accepted.
_OPAQUE_ID: Final = r"[A-Za-z0-9_\-.:@+=]{1,128}"
_USER_ID: Final = r"[A-Za-z0-9_.:-]{1,128}"
# Except this one: the authorizer reads X-Device-Id on every request that carries one.
_DEVICE_ID: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")


def is_valid_session_id(value: object) -> bool:
    """A session id this project could have written (also a refresh token's ``jti``)."""
    return isinstance(value, str) and re.fullmatch(_OPAQUE_ID, value) is not None


def is_valid_user_id(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(_USER_ID, value) is not None


def is_valid_device_id(value: object) -> bool:
    return isinstance(value, str) and _DEVICE_ID.fullmatch(value) is not None


def device_id_or_none(value: object) -> str | None:
    """``X-Device-Id`` as the authorizer reads it: a valid id, else None (no device)."""
    return value if isinstance(value, str) and is_valid_device_id(value) else None


# --- headers ---------------------------------------------------------------------------------

AUTHORIZATION: Final = "authorization"
COOKIE: Final = "cookie"
DEVICE_ID_HEADER: Final = "x-device-id"
# The cookie whose SHA-256 access tokens are bound to (``fgp``); the refresh token's cookie.
FINGERPRINT_COOKIE: Final = "__Host-fgp"
REFRESH_COOKIE: Final = "__Secure-rt"


# A character that lower() could change, or that no header name holds (RFC 9110 tchar).
_NOT_LOWER_TCHAR: Final = re.compile(r"[^a-z0-9!#$%&'*+.^_`|~-]")


def header_map(headers: Mapping[object, object], multi: object = None) -> dict[str, object]:
    """Header names lowercased. A header given more than once (two spellings, or several values
    in REST's ``multiValueHeaders``) becomes a list, which no single-value reader accepts."""
    if multi is None and type(headers) is dict:
        # API Gateway's HTTP API events already lowercase every name (and join repeats), so
        # when no name has a capital the map is its own answer, and two spellings of one name
        # cannot both be in it. A non-string name fails the join and takes the long way.
        try:
            names = "".join(headers)
        except TypeError:
            names = None
        if names is not None and not _NOT_LOWER_TCHAR.search(names):
            return cast(dict[str, object], headers)
    lowered: dict[str, object] = {}
    for name, value in headers.items():
        if isinstance(name, str):
            key = name.lower()
            lowered[key] = [lowered[key], value] if key in lowered else value
    if isinstance(multi, dict):  # a dict, not any Mapping: this runs on every request
        for name, values in multi.items():
            if isinstance(name, str) and isinstance(values, list) and len(values) > 1:
                lowered[name.lower()] = list(values)
    return lowered


# --- the bearer token ------------------------------------------------------------------------

# The verifier's bound on a whole token (tokens.verify.MAX_TOKEN_LENGTH, kept equal by a test):
# stated here so this module never imports the token package.
MAX_TOKEN_CHARS: Final = 8192
MAX_AUTHORIZATION_CHARS: Final = len("Bearer ") + MAX_TOKEN_CHARS
# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; exactly one space, so a header that two
# parsers could split differently never reaches the verifier.
_B64TOKEN_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


class MissingToken(MalformedToken):
    """No Authorization header (or an empty one)."""

    code = "missing_token"


class MalformedAuthorization(MalformedToken):
    """An Authorization header that is not exactly ``Bearer <token>``."""

    code = "malformed_authorization"


def bearer_token(authorization: object) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if authorization is None or authorization == "":
        raise MissingToken("no bearer token")
    if not isinstance(authorization, str):
        raise MalformedAuthorization("authorization header is not one string")
    if len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise MalformedAuthorization("authorization header is too long")
    # Byte operations rather than a regular expression over the whole header (a third of the
    # cost, on every request the authorizer answers): the scheme, case-insensitively and in
    # ASCII only, then a b64token, which deleting every allowed byte must leave empty.
    scheme = authorization[:7]
    token = authorization[7:]
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise MalformedAuthorization("authorization header is not 'Bearer <token>'") from exc
    body = raw.rstrip(b"=")
    if (
        not scheme.isascii()
        or scheme.lower() != "bearer "
        or not body
        or body.translate(None, _B64TOKEN_BYTES)
    ):
        raise MalformedAuthorization("authorization header is not 'Bearer <token>'")
    return token


def bearer_token_or_none(authorization: object) -> str | None:
    """``bearer_token``, with None for an absent or malformed header."""
    try:
        return bearer_token(authorization)
    except MalformedToken:
        return None


# --- cookies -----------------------------------------------------------------------------------

# A request carries a handful of cookies; beyond these bounds the material is skipped, not
# parsed. A pair may be as long as the verifier's largest token plus a name, so any token-sized
# value is judged by the verifier like every other bad token (the same 401), not mistaken for
# a missing cookie. Browsers send at most 4096 bytes per cookie anyway.
MAX_COOKIES: Final = 50
MAX_COOKIE_CHARS: Final = MAX_TOKEN_CHARS + 64
MAX_COOKIE_HEADER_CHARS: Final = 16_384
_HOST_PREFIX: Final = "__host-"

CookiePair = tuple[str, str]


def cookie_pieces(cookies: object, header: object) -> object:
    """Where a request's cookies are: the event's ``cookies`` list when it has one (HTTP API
    payload 2.0 moves the header there), else the ``Cookie`` header."""
    return cookies if isinstance(cookies, list) else header


def cookie_pairs(pieces: object) -> list[CookiePair]:
    """The ``(name, value)`` pairs of ``pieces``: a ``Cookie`` header, or a list of them (the
    event's ``cookies``, or a header split into pieces). Nothing here raises."""
    if isinstance(pieces, str):
        pieces = [pieces]
    elif not isinstance(pieces, list):
        return []
    pairs: list[CookiePair] = []
    for piece in pieces[:MAX_COOKIES]:
        if not isinstance(piece, str) or len(piece) > MAX_COOKIE_HEADER_CHARS:
            continue
        # An entry of the cookies list is usually one pair: split only when it is not.
        split = piece.split(";", MAX_COOKIES)[:MAX_COOKIES] if ";" in piece else (piece,)
        for pair in split:
            name, sep, value = pair.partition("=")
            name = name.lstrip()
            if not sep or not name or len(pair) > MAX_COOKIE_CHARS:
                continue
            pairs.append((name, value.strip()))
            if len(pairs) >= MAX_COOKIES:
                return pairs
    return pairs


def cookie_value(pairs: Iterable[CookiePair], name: str) -> str | None:
    """The value of cookie ``name`` by the one rule (module docstring): a repeated ``__Host-``
    cookie is absent, any other repeated name is its first value. An empty value is absent."""
    found: str | None = None
    for key, value in pairs:
        if key != name:
            continue
        if found is None:
            found = value
            if not _is_host_cookie(name):
                break
        else:
            return None
    return found or None


def cookie_jar(pairs: Iterable[CookiePair]) -> dict[str, str]:
    """Every cookie by the same rule as ``cookie_value`` (empty values dropped)."""
    jar: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key in jar or key in repeated:
            if _is_host_cookie(key):
                jar.pop(key, None)
                repeated.add(key)
            continue
        jar[key] = value
    return {key: value for key, value in jar.items() if value}


def _is_host_cookie(name: str) -> bool:
    # Browsers match the prefix case-insensitively (RFC 6265bis §4.1.3).
    return name[: len(_HOST_PREFIX)].lower() == _HOST_PREFIX


__all__ = [
    "AUTHORIZATION",
    "COOKIE",
    "DEVICE_ID_HEADER",
    "DEVICE_ID_MAX_CHARS",
    "FINGERPRINT_COOKIE",
    "ID_MAX_CHARS",
    "MAX_AUTHORIZATION_CHARS",
    "MAX_COOKIES",
    "MAX_COOKIE_CHARS",
    "MAX_COOKIE_HEADER_CHARS",
    "MAX_TOKEN_CHARS",
    "REFRESH_COOKIE",
    "CookiePair",
    "MalformedAuthorization",
    "MissingToken",
    "bearer_token",
    "bearer_token_or_none",
    "cookie_jar",
    "cookie_pairs",
    "cookie_pieces",
    "cookie_value",
    "device_id_or_none",
    "header_map",
    "is_valid_device_id",
    "is_valid_session_id",
    "is_valid_user_id",
]
