"""What a token says, as typed values: one type per kind of token, each with a rule table.

A rule (:class:`Claim`) names a JSON member, the attribute that holds it, how a JSON value
becomes that attribute (or is refused as ``InvalidClaim``), and whether every token must carry
it. ``to_payload`` writes the members in table order (minting is deterministic), leaving out
an optional claim that is None or ""; ``from_payload`` reads them back, refusing a missing (or
null) required claim and any value its rule does not accept. ``verify`` runs its standard checks
(issuer, audience, times, which need the settings and the clock) first, then ``from_payload``.

A new claim is one rule and one attribute here, plus whoever supplies its value.

Token types are data: every token carries a ``token_use`` claim and a ``typ`` header, and each
is checked on every verify.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

from tokencore.errors import InvalidClaim, MissingClaim, WrongTokenType


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

MAX_ID_LENGTH = 256
MAX_ROLES = 64
MAX_ROLE_LENGTH = 64


# --- how a JSON value becomes an attribute ------------------------------------------------------
# Each takes the claim's name (for the message, never the value) and its JSON value.


def string(name: str, value: object) -> str:
    """A non-empty string (``iss``, and ``aud`` once verify has matched it)."""
    if not isinstance(value, str) or not value:
        raise InvalidClaim(f"claim {name} must be a non-empty string")
    return value


def identifier(name: str, value: object) -> str:
    """A non-empty string of bounded length (``sub``, ``sid``, ``jti``)."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidClaim(f"claim {name} must be a non-empty string")
    return value


def optional_text(name: str, value: object) -> str | None:
    """A string of bounded length, or JSON null (absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
        raise InvalidClaim(f"claim {name} must be a string")
    return value


def numeric_date(name: str, value: object) -> int:
    """RFC 7519 NumericDate: a number (PyJWT would accept "1700000000" and True), floored."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return math.floor(value)
    raise InvalidClaim(f"claim {name} must be a NumericDate")


def whole_seconds(value: float) -> int:
    """A NumericDate as minted: whole seconds, so a fractional clock reading never leaks into a
    token (and a re-minted refresh token is the same token, byte for byte)."""
    return int(value)


def role_list(name: str, value: object) -> tuple[str, ...]:
    """A list of at most ``MAX_ROLES`` short, non-empty strings."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_ROLES
        or not all(isinstance(role, str) and 0 < len(role) <= MAX_ROLE_LENGTH for role in value)
    ):
        raise InvalidClaim(f"claim {name} must be a list of short strings")
    return tuple(value)


def non_negative_integer(name: str, value: object) -> int:
    """A non-negative integer (booleans are not integers here)."""
    if type(value) is not int or value < 0:
        raise InvalidClaim(f"claim {name} must be a non-negative integer")
    return value


Parse = Callable[[str, object], object]


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim of a token type's rule table."""

    name: str  # the JSON member
    attr: str  # the attribute of the claims type that holds it
    parse: Parse  # JSON value -> attribute; raises InvalidClaim
    required: bool = True  # absent -> MissingClaim; else absent -> the attribute's default
    dump: Callable[[Any], object] = lambda value: value  # attribute -> JSON value (as is)


# Registered claims every token carries, in payload order. ``aud`` is read as one string:
# verify has already matched it (a list holding our audience) and put the match in its place.
STANDARD_CLAIMS: tuple[Claim, ...] = (
    Claim("iss", "issuer", string),
    Claim("aud", "audience", string),
    Claim("sub", "subject", identifier),
    Claim("sid", "session_id", identifier),
    Claim("jti", "token_id", identifier),
    Claim("iat", "issued_at", numeric_date, dump=whole_seconds),
    Claim("exp", "expires_at", numeric_date, dump=whole_seconds),
)
# What verify checks is present before anything else (and the type claim after them).
REQUIRED_CLAIMS: tuple[str, ...] = (
    *(claim.name for claim in STANDARD_CLAIMS if claim.required),
    CLAIM_TOKEN_USE,
)


class _Claims:
    """``to_payload`` and ``from_payload`` over a subclass's ``USE`` and ``RULES`` (the
    standard claims, then its own)."""

    __slots__ = ()
    USE: ClassVar[TokenUse]
    RULES: ClassVar[tuple[Claim, ...]]
    # RULES as plain tuples, built once per type: from_payload runs for every token verified.
    _PLAN: ClassVar[tuple[tuple[str, str, Parse, bool], ...]]
    _OWN_PLAN: ClassVar[tuple[tuple[str, str, Parse, bool], ...]]
    issued_at: int
    expires_at: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._PLAN = tuple((c.name, c.attr, c.parse, c.required) for c in cls.RULES)
        cls._OWN_PLAN = cls._PLAN[len(STANDARD_CLAIMS) :]

    def to_payload(self) -> dict[str, Any]:
        """The JWT claims set: the standard claims, ``token_use``, then the type's own."""
        payload: dict[str, Any] = {}
        standard = len(STANDARD_CLAIMS)
        self._write(self.RULES[:standard], payload)
        payload[CLAIM_TOKEN_USE] = self.USE.value
        self._write(self.RULES[standard:], payload)
        return payload

    def _write(self, rules: tuple[Claim, ...], payload: dict[str, Any]) -> None:
        for claim in rules:
            value = getattr(self, claim.attr)
            if claim.required or (value is not None and value != ""):
                payload[claim.name] = claim.dump(value)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, standard_checked: bool = False) -> Self:
        """The claims of a payload, every rule applied; a wrong ``token_use`` is refused.

        ``standard_checked``: verify's standard checks have already validated and normalized
        the standard claims (identifiers, NumericDates, the audience that matched), so they are
        taken as they are and only the type's own rules run (the authorizer's hot path).
        """
        if payload.get(CLAIM_TOKEN_USE) != cls.USE:  # a StrEnum: .value would be a Python call
            raise WrongTokenType("token_use does not match")
        get = payload.get
        if standard_checked:
            values = {attr: payload[name] for name, attr in _STANDARD_ATTRS}
            plan = cls._OWN_PLAN
        else:
            values = {}
            plan = cls._PLAN
        for name, attr, parse, required in plan:
            value = get(name, _ABSENT)
            # A required claim that is JSON null is missing ("gen": null); an optional one is
            # left to its rule ("email": null is no email, "roles": null is refused).
            if value is _ABSENT or (value is None and required):
                if required:
                    raise MissingClaim(f"claim {name} is required")
                continue
            values[attr] = parse(name, value)
        return _build(cls, values)


_ABSENT: Any = object()
_STANDARD_ATTRS = tuple((claim.name, claim.attr) for claim in STANDARD_CLAIMS)

# Per claims type: (slot setter, attribute, default or _ABSENT) for every field, in order.
_SETTERS: dict[type, tuple[tuple[Callable[[Any, Any], None], str, Any], ...]] = {}


def _build[C: _Claims](cls: type[C], values: dict[str, Any]) -> C:
    """``cls(**values)`` without the frozen dataclass's ``__init__``, which pays an
    ``object.__setattr__`` call per field (2 us of the authorizer's first sight of a token,
    ``make bench``): the same slots, set once through their descriptors. A required
    attribute missing from ``values`` is a TypeError, as the ``__init__`` would raise."""
    setters = _SETTERS.get(cls)
    if setters is None:
        setters = tuple(
            (
                getattr(cls, item.name).__set__,
                item.name,
                _ABSENT if item.default is dataclasses.MISSING else item.default,
            )
            for item in dataclasses.fields(cls)  # type: ignore[arg-type]
        )
        _SETTERS[cls] = setters
    claims = object.__new__(cls)
    for setter, attr, default in setters:
        value = values.get(attr, default)
        if value is _ABSENT:
            raise TypeError(f"{cls.__name__} needs {attr}")
        setter(claims, value)
    return claims


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClaims(_Claims):
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

    USE: ClassVar[TokenUse] = TokenUse.ACCESS
    RULES: ClassVar[tuple[Claim, ...]] = (
        *STANDARD_CLAIMS,
        # Always written, even empty: absent reads as no roles.
        Claim("roles", "roles", role_list, required=False, dump=list),
        Claim("email", "email", optional_text, required=False),
        Claim(CLAIM_FINGERPRINT, "fingerprint_hash", optional_text, required=False),
        Claim(CLAIM_SECURITY_LEVEL, "security_level", optional_text, required=False),
    )

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshClaims(_Claims):
    """A refresh token names its session, its own id and generation, and nothing else about
    the user: roles and email are re-read from the user record at every refresh. Its audience
    is the issuer itself."""

    subject: str
    session_id: str
    token_id: str
    generation: int
    issuer: str
    audience: str
    issued_at: int
    expires_at: int

    USE: ClassVar[TokenUse] = TokenUse.REFRESH
    RULES: ClassVar[tuple[Claim, ...]] = (
        *STANDARD_CLAIMS,
        Claim(CLAIM_GENERATION, "generation", non_negative_integer),
    )


TokenClaims = AccessClaims | RefreshClaims
