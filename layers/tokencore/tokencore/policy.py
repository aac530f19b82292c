"""Authorization decisions, with no Lambda or AWS types in them.

Given verified access-token claims and the request's method and path, decide whether the
session store must be consulted (sensitive route, high security level, or sampled) and whether
the caller's roles allow the route. The authorizer handler turns the decision into API Gateway's
response shape; nothing here knows that shape.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tokencore.config import RoutePattern, Settings
from tokencore.tokens.claims import AccessClaims

ADMIN_ROLE = "admin"
ADMIN_PREFIX = "/admin/"
# A session at or above this security level (the token's ``acr``, a decimal string) is always
# checked against the session store. Level 1 is a password login and is left off the token.
HIGH_SECURITY_LEVEL = 2


def is_high_security(level: str | None) -> bool:
    return level is not None and level.isdecimal() and int(level) >= HIGH_SECURITY_LEVEL


class SessionCheckReason(StrEnum):
    SENSITIVE_ROUTE = "sensitive_route"
    HIGH_SECURITY = "high_security"
    SAMPLED = "sampled"


def route_matches(pattern: RoutePattern, method: str, path: str) -> bool:
    """``*`` matches any method or exactly one path segment; a trailing ``/*`` matches the
    prefix and everything below it."""
    if pattern.method != "*" and pattern.method != method.upper():
        return False
    want = pattern.path.rstrip("/").split("/")
    have = path.rstrip("/").split("/")
    if want[-1] == "*" and len(have) >= len(want):
        # Subtree: compare the prefix, then anything (at least one segment) may follow.
        want, have = want[:-1], have[: len(want) - 1]
    if len(want) != len(have):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have, strict=True))


def is_sensitive(patterns: Iterable[RoutePattern], method: str, path: str) -> bool:
    return any(route_matches(pattern, method, path) for pattern in patterns)


def normalize_path(path: str) -> str | None:
    """Collapse repeated slashes; refuse dot segments and percent-encoding.

    A path that could be read two ways (``//admin/x``, ``/me/../admin/x``, ``/%61dmin/x``) must
    never be matched one way here and routed another way by API Gateway: such paths are denied.
    """
    if not path.startswith("/") or "%" in path or "\\" in path:
        return None
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        return None
    return "/" + "/".join(segments)


def required_role(path: str) -> str | None:
    """The role a route needs, beyond a valid token."""
    if path == ADMIN_PREFIX.rstrip("/") or path.startswith(ADMIN_PREFIX):
        return ADMIN_ROLE
    return None


# A path that could be read two ways (normalize_path): denied, remembered like any route.
_MALFORMED: Final[tuple[str | None, bool]] = ("", False)
_MAX_ROUTES: Final = 512


@dataclass(frozen=True, slots=True)
class RouteDecision:
    allowed: bool
    session_check: SessionCheckReason | None
    deny_reason: str | None = None


class Policy:
    """One per container: settings and the sampler are fixed, decisions are pure."""

    def __init__(self, settings: Settings, sampler: random.Random | None = None) -> None:
        self._patterns = settings.sensitive_routes
        self._sample_rate = settings.session_check_sample_rate
        # Sampling spreads load; it is not a secret, so a fast PRNG is right here.
        self._sampler = sampler or random.Random()  # noqa: S311
        self._routes: dict[tuple[str, str], tuple[str | None, bool]] = {}

    def session_check_reason(
        self, claims: AccessClaims, method: str, path: str
    ) -> SessionCheckReason | None:
        return self._reason(claims, is_sensitive(self._patterns, method, path))

    def _reason(self, claims: AccessClaims, sensitive: bool) -> SessionCheckReason | None:
        if sensitive:
            return SessionCheckReason.SENSITIVE_ROUTE
        if is_high_security(claims.security_level):
            return SessionCheckReason.HIGH_SECURITY
        if self._sample_rate > 0 and self._sampler.random() < self._sample_rate:
            return SessionCheckReason.SAMPLED
        return None

    def decide(self, claims: AccessClaims, method: str, path: str) -> RouteDecision:
        route = self._routes.get((method, path))
        if route is None:
            route = self._route(method, path)
        if route is _MALFORMED:
            return RouteDecision(False, None, "malformed_path")
        role, sensitive = route
        if role is not None and not claims.has_role(role):
            return RouteDecision(False, None, "insufficient_role")
        if role is not None:
            # A role-gated route reads the user whatever SENSITIVE_ROUTES says, so a role
            # removed since the token was minted counts at the next request.
            return RouteDecision(True, SessionCheckReason.SENSITIVE_ROUTE)
        return RouteDecision(True, self._reason(claims, sensitive))

    def _route(self, method: str, path: str) -> tuple[str | None, bool]:
        """What a route needs (its role, whether it is sensitive), remembered per (method,
        path): a pure function of the settings, the same for every caller. Bounded: a flood
        of distinct paths only costs their own computation."""
        normalized = normalize_path(path)
        if normalized is None:
            route = _MALFORMED
        else:
            route = (
                required_role(normalized),
                is_sensitive(self._patterns, method, normalized),
            )
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[(method, path)] = route
        return route
