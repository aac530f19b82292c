"""Authorization decisions, with no Lambda or AWS types in them.

Given verified access-token claims, the request's method and path, and the route template API
Gateway matched (when it names one), decide whether the caller's roles allow the route
(``ROUTE_ROLES``) and whether the session store must be consulted (``SENSITIVE_ROUTES``, a high
security level, or sampled). The authorizer handler turns the decision into API Gateway's
response shape; nothing here knows that shape.

Which rules apply: every rule matching the route template, the canonical path (decoded once),
or any other reading of the path (``tokencore.paths``). A caller must satisfy every one of
them, so a path cannot be spelled to escape a rule: where the readings disagree and one of them
needs a role the caller lacks, the request is denied as ``ambiguous_path``; where they agree,
percent-encoding changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tokencore.config import RoleRule, RoutePattern, Settings
from tokencore.paths import Segments, read_path, template_segments
from tokencore.tokens.claims import AccessClaims

ADMIN_ROLE = "admin"
# A session at or above this security level (the token's ``acr``, a decimal string) is always
# checked against the session store. Level 1 is a password login and is left off the token.
HIGH_SECURITY_LEVEL = 2


def is_high_security(level: str | None) -> bool:
    return level is not None and level.isdecimal() and int(level) >= HIGH_SECURITY_LEVEL


class SessionCheckReason(StrEnum):
    SENSITIVE_ROUTE = "sensitive_route"
    HIGH_SECURITY = "high_security"
    SAMPLED = "sampled"
    REVOCATION_LIST_STALE = "revocation_list_stale"


class DenyReason(StrEnum):
    MALFORMED_PATH = "malformed_path"
    INSUFFICIENT_ROLE = "insufficient_role"
    AMBIGUOUS_PATH = "ambiguous_path"
    ROLE_REMOVED = "role_removed"  # the session check found the role gone from the user


def pattern_segments(pattern: RoutePattern) -> Segments:
    return tuple(segment for segment in pattern.path.split("/") if segment)


class _Matcher:
    """One pattern, split once: ``*`` matches any method or exactly one segment; a trailing
    ``/*`` matches the prefix itself and everything below it."""

    __slots__ = ("method", "subtree", "want")

    def __init__(self, pattern: RoutePattern) -> None:
        want = pattern_segments(pattern)
        self.method = pattern.method
        self.subtree = bool(want) and want[-1] == "*" and pattern.path.endswith("/*")
        self.want = want[:-1] if self.subtree else want

    def matches(self, method: str, segments: Segments) -> bool:
        if self.method != "*" and self.method != method:
            return False
        want = self.want
        if len(segments) != len(want) and not (self.subtree and len(segments) > len(want)):
            return False
        for index, expected in enumerate(want):
            if expected != "*" and expected != segments[index]:
                return False
        return True


def segments_match(pattern: RoutePattern, method: str, segments: Segments) -> bool:
    return _Matcher(pattern).matches(method.upper(), segments)


def route_matches(pattern: RoutePattern, method: str, path: str) -> bool:
    """``segments_match`` on a path taken literally (empty segments ignored)."""
    return segments_match(pattern, method, tuple(s for s in path.split("/") if s))


def is_sensitive(patterns: Iterable[RoutePattern], method: str, path: str) -> bool:
    return any(route_matches(pattern, method, path) for pattern in patterns)


# The route part of a decision is remembered for paths up to this long, this many at most
# (cleared when full: a flood of distinct paths only costs their decisions).
_CACHED_PATH_CHARS = 256
_CACHED_ROUTES = 512


@dataclass(frozen=True, slots=True)
class RouteDecision:
    allowed: bool
    session_check: SessionCheckReason | None
    deny_reason: str | None = None
    # The ROUTE_ROLES rule that refused the request (for the log line), if one did.
    rule: RoleRule | None = None
    # Allowed: the rules the route met, which the user's current roles must still satisfy
    # once the session check has read them.
    rules: tuple[RoleRule, ...] = ()


class Policy:
    """One per container: settings and the sampler are fixed, decisions are pure."""

    def __init__(self, settings: Settings, sampler: random.Random | None = None) -> None:
        self._sensitive = tuple(_Matcher(pattern) for pattern in settings.sensitive_routes)
        self.role_rules = settings.route_roles
        self._rules = tuple((_Matcher(rule.pattern), rule) for rule in settings.route_roles)
        self._sample_rate = settings.session_check_sample_rate
        # Sampling spreads load; it is not a secret, so a fast PRNG is right here.
        self._sampler = sampler or random.Random()  # noqa: S311
        self._routes: dict[
            tuple[str, str, str | None, tuple[str, ...]], tuple[RouteDecision, bool]
        ] = {}

    def unmet_rules(self, roles: tuple[str, ...]) -> tuple[RoleRule, ...]:
        """The rules a holder of ``roles`` does not satisfy, wherever they apply (what a
        cache-safe REST policy must deny)."""
        return tuple(rule for rule in self.role_rules if not rule.allows(roles))

    def decide(
        self,
        claims: AccessClaims,
        method: str,
        path: str,
        template: str | None = None,
    ) -> RouteDecision:
        route_key = (method, path, template, claims.roles)
        route = self._routes.get(route_key)
        if route is None:
            route = self._route(claims.roles, method, path, template)
            if len(path) <= _CACHED_PATH_CHARS:
                if len(self._routes) >= _CACHED_ROUTES:
                    self._routes.clear()
                self._routes[route_key] = route
        decision, sensitive = route
        if not decision.allowed:
            return decision
        session_check = self._session_check_reason(claims, sensitive=sensitive)
        if session_check is None:
            return decision
        return RouteDecision(True, session_check, rules=decision.rules)

    def _route(
        self, roles: tuple[str, ...], method: str, path: str, template: str | None
    ) -> tuple[RouteDecision, bool]:
        """What the route alone decides for a holder of ``roles`` (no session check yet), and
        whether it is sensitive. Pure: ``decide`` remembers it per (method, path, template,
        roles), since a warm container sees few distinct routes and role sets."""
        readings = read_path(path)
        if readings is None:
            return RouteDecision(False, None, DenyReason.MALFORMED_PATH), False
        method = method.upper()
        primary = [readings.canonical]
        if template is not None:
            segments = template_segments(template)
            if segments is None:
                return RouteDecision(False, None, DenyReason.MALFORMED_PATH), False
            if segments != readings.canonical:
                primary.append(segments)
        met: dict[RoleRule, None] = {}
        for segments in primary:
            rule = self._check_rules(roles, method, segments, met)
            if rule is not None:
                return RouteDecision(False, None, DenyReason.INSUFFICIENT_ROLE, rule), False
        for segments in readings.alternates:
            rule = self._check_rules(roles, method, segments, met)
            if rule is not None:
                return RouteDecision(False, None, DenyReason.AMBIGUOUS_PATH, rule), False
        # A role-gated route reads the user whatever SENSITIVE_ROUTES says, so a role removed
        # since the token was minted counts at the next request.
        sensitive = bool(met) or any(
            matcher.matches(method, segments)
            for segments in (*primary, *readings.alternates)
            for matcher in self._sensitive
        )
        return RouteDecision(True, None, rules=tuple(met)), sensitive

    def _check_rules(
        self, roles: tuple[str, ...], method: str, segments: Segments, met: dict[RoleRule, None]
    ) -> RoleRule | None:
        """The first rule ``segments`` meet that ``roles`` do not satisfy; the satisfied ones
        are added to ``met``."""
        for matcher, rule in self._rules:
            if matcher.matches(method, segments):
                if not rule.allows(roles):
                    return rule
                met[rule] = None
        return None

    def _session_check_reason(
        self, claims: AccessClaims, *, sensitive: bool
    ) -> SessionCheckReason | None:
        if sensitive:
            return SessionCheckReason.SENSITIVE_ROUTE
        if is_high_security(claims.security_level):
            return SessionCheckReason.HIGH_SECURITY
        if self._sample_rate > 0 and self._sampler.random() < self._sample_rate:
            return SessionCheckReason.SAMPLED
        return None
