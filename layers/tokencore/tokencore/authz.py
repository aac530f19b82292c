"""Authorizing one API request from its bearer token: pure, no Lambda and no AWS types.

The authorizer function turns an API Gateway event into an ``AuthzRequest``, calls
``Authorizer.authorize`` and shapes the answer. The steps run cheapest first (the header, the
token, the fingerprint binding, the route policy, then the session only when the policy asks),
each raising one error of ``tokencore.errors``; docs/authorizer.md "The verification order" is
the one place they are written out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from tokencore import wire
from tokencore.authcontext import AuthorizerContext, ContextValue, flat_context
from tokencore.claimscache import ClaimsCache
from tokencore.clock import Clock
from tokencore.config import RoleRule
from tokencore.errors import (
    DeviceMismatch,
    FingerprintMismatch,
    Forbidden,
    SessionRevoked,
    SessionUserMismatch,
)
from tokencore.policy import DenyReason, Policy, RouteDecision, SessionCheckReason
from tokencore.revocations import NOT_LISTED, RevocationList, Standing
from tokencore.tokens import (
    AccessClaims,
    KeyLookup,
    VerifyOptions,
    fingerprint_matches,
    verify_access_token_and_key,
)

if TYPE_CHECKING:
    from tokencore.sessioncheck import SessionReader

# The bound every reader of X-Device-Id shares (the session store's too): tokencore.wire.
DEVICE_ID_MAX_CHARS: Final = wire.DEVICE_ID_MAX_CHARS


# --- errors (subclasses of the tree in tokencore.errors, with their own short codes) -----------


class FingerprintUnavailable(FingerprintMismatch):
    """The token is bound to a fingerprint cookie, and this kind of request cannot carry
    cookies (a REST TOKEN authorizer sees one header only): fail closed."""

    code = "fingerprint_unavailable"


class SessionListed(SessionRevoked):
    """The token's session is on the revocation list this container fetched."""

    code = "session_listed"


class UserListed(SessionRevoked):
    """The token's user is on the revocation list with a not-before after the token's iat
    (revoke-all, a disabled user, a password change)."""

    code = "user_listed"


class RouteForbidden(Forbidden):
    """A valid token whose holder may not call this route. ``code`` is the policy's reason
    (``insufficient_role``, ``ambiguous_path``, ``malformed_path``, ``role_removed``);
    ``claims`` name the principal; ``rule`` is the ROUTE_ROLES rule that refused it, if one
    did."""

    def __init__(self, reason: str, claims: AccessClaims, rule: RoleRule | None = None) -> None:
        super().__init__(f"route denied ({reason})")
        self.code = reason
        self.claims = claims
        self.rule = rule


# --- the request and the answer ---------------------------------------------------------------


# The per-request records below are not frozen: each lives for one request, and a frozen
# dataclass costs about 1.5 us to build (object.__setattr__ per field), which on the fast path
# was as much as the rest of the answer (``make bench``).


@dataclass(slots=True)
class AuthzRequest:
    """What the authorizer needs from one request, whatever the event shape.

    ``authorization`` is the raw header value as received (anything but a string is malformed).
    ``path`` is the path as sent (percent-encoded; the policy decodes it once).
    ``route_path`` is the route template API Gateway matched (``/admin/users/{user_id}/revoke``)
    when it names one: the policy applies its rules to both, so a path that API Gateway routes
    differently from how it reads here can only make the decision stricter.
    ``cookies_visible`` is False where the event cannot carry cookies at all.
    """

    authorization: object = field(repr=False)
    method: str
    path: str
    route_path: str | None = None
    fingerprint: str | None = field(default=None, repr=False)
    cookies_visible: bool = True
    device_id: str | None = None


@dataclass(slots=True)
class Grant:
    """An allowed request: who, and why the session store was (or was not) consulted.

    ``roles`` (None: the token's) are the token's roles the user still holds, when the
    session check read the user: a role removed since the token was minted is gone at once."""

    claims: AccessClaims
    session_check: SessionCheckReason | None
    roles: tuple[str, ...] | None = None

    @property
    def session_checked(self) -> bool:
        return self.session_check is not None

    def context(self) -> AuthorizerContext:
        """What the routes behind the authorizer learn about the caller."""
        return AuthorizerContext.from_claims(
            self.claims, session_checked=self.session_checked, roles=self.roles
        )

    def flat_context(self) -> dict[str, ContextValue]:
        """``context().to_context()``, without building the AuthorizerContext in between."""
        return flat_context(self.claims, session_checked=self.session_checked, roles=self.roles)


@dataclass(slots=True)
class AuthzTrace:
    """Filled in as ``authorize`` progresses, so the caller can log and count what happened
    even when it ends in an error (the claims once verified, the session check once started)."""

    claims: AccessClaims | None = None
    session_check: SessionCheckReason | None = None


# --- the authorizer -----------------------------------------------------------------------------


class Authorizer:
    """One per container: keys, options, policy and patterns are fixed; calls are independent.

    ``sessions`` is a provider of the session check's reader, called only when a check is due,
    so the fast path never builds a store (nor imports boto3). ``claims_cache`` (None: none)
    remembers verified tokens; see ``tokencore.claimscache`` for what bounds it.
    """

    def __init__(
        self,
        *,
        keys: KeyLookup,
        options: VerifyOptions,
        policy: Policy,
        sessions: Callable[[], SessionReader],
        clock: Clock,
        claims_cache: ClaimsCache | None = None,
        revocations: RevocationList | None = None,
    ) -> None:
        self._keys = keys
        self._options = options
        self._policy = policy
        self._sessions = sessions
        self._clock = clock
        self.claims_cache = claims_cache
        self.revocations = revocations

    def authorize(self, request: AuthzRequest, trace: AuthzTrace | None = None) -> Grant:
        """A Grant, or the error that says why not (a Rejected or a ServiceFault)."""
        trace = trace if trace is not None else AuthzTrace()
        token = wire.bearer_token(request.authorization)
        claims = self.verified_claims(token)
        trace.claims = claims
        _check_fingerprint(claims, request)
        decision = self._decide(claims, request)
        decision = self._checked_against_list(claims, decision)
        if decision.session_check is None:
            return Grant(claims, None)
        trace.session_check = decision.session_check
        held = self._check_session(claims, request, decision.session_check)
        roles = tuple(role for role in claims.roles if role in held)
        for rule in decision.rules:
            if not rule.allows(roles):
                raise RouteForbidden(DenyReason.ROLE_REMOVED, claims, rule)
        return Grant(claims, decision.session_check, roles)

    def verified_claims(self, token: str) -> AccessClaims:
        """The token's claims: from the claims cache when this container verified this exact
        string before (and may still trust that), otherwise verified now (and cached)."""
        now = self._clock.now()
        cache = self.claims_cache
        if cache is not None:
            claims = cache.lookup(token, self._keys, now)
            if claims is not None:
                return claims
        claims, key = verify_access_token_and_key(token, self._keys, self._options, now)
        if cache is not None:
            cache.store(token, claims, key, now)
        return claims

    @property
    def policy(self) -> Policy:
        return self._policy

    def _decide(self, claims: AccessClaims, request: AuthzRequest) -> RouteDecision:
        decision = self._policy.decide(claims, request.method, request.path, request.route_path)
        if not decision.allowed:
            raise RouteForbidden(decision.deny_reason or "forbidden", claims, decision.rule)
        return decision

    def _checked_against_list(self, claims: AccessClaims, decision: RouteDecision) -> RouteDecision:
        """Deny a listed session on every route; with a copy too old to trust, check the
        session in the store instead (tokencore.revocations says when)."""
        if self.revocations is None:
            return decision
        standing = self.revocations.standing(claims.session_id, claims.subject, claims.issued_at)
        if standing is NOT_LISTED:  # every request's case: one identity test
            return decision
        if standing is Standing.LISTED:
            raise SessionListed("session is on the revocation list")
        if standing is Standing.USER_LISTED:
            raise UserListed("user is on the revocation list")
        if standing is Standing.STALE and decision.session_check is None:
            return replace(decision, session_check=SessionCheckReason.REVOCATION_LIST_STALE)
        return decision

    def _check_session(
        self, claims: AccessClaims, request: AuthzRequest, reason: SessionCheckReason
    ) -> tuple[str, ...]:
        """The roles the user holds now. One strongly consistent read of the session and its
        user; anything but good standing raises here."""
        session, user = self._sessions().check(claims.session_id, claims.subject, self._clock.now())
        if (
            reason is SessionCheckReason.SENSITIVE_ROUTE
            and session.device_id is not None
            and request.device_id != session.device_id
        ):
            raise DeviceMismatch("device does not match the session")
        return user.roles


def _check_fingerprint(claims: AccessClaims, request: AuthzRequest) -> None:
    expected = claims.fingerprint_hash
    if expected is None:
        return
    if not request.cookies_visible:
        raise FingerprintUnavailable("token is bound to a cookie this request cannot carry")
    if not fingerprint_matches(expected, request.fingerprint):
        raise FingerprintMismatch("fingerprint cookie is missing or does not match")


__all__ = [
    "DEVICE_ID_MAX_CHARS",
    "Authorizer",
    "AuthzRequest",
    "AuthzTrace",
    "FingerprintUnavailable",
    "Grant",
    "RouteForbidden",
    "SessionListed",
    "SessionUserMismatch",
    "UserListed",
]
