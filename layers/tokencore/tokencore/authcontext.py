"""What the Lambda authorizer tells a protected route about its caller, both ways.

The authorizer writes an ``AuthorizerContext`` into its answer (``to_context``: the flat
context API Gateway hands to the integration, strings, numbers and booleans only); a route
reads it back (``from_context``) from ``requestContext.authorizer.lambda``. One type for both
ends: a new claim reaches every backend by being added to the claims type and here.

Reading is defensive: API Gateway builds the context, but so do the local stack and hand-written
test events. A missing or malformed identity is ``Unauthenticated`` (401: a protected route
reached without the authorizer refuses, never crashes), and ``expires_at`` is enforced again,
so an authorizer result cached by API Gateway never outlives the token it was computed from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from tokencore.errors import Rejected
from tokencore.wire import is_valid_session_id, is_valid_user_id

if TYPE_CHECKING:
    from tokencore.tokens.claims import AccessClaims

ContextValue = str | int | bool

# Compiled on first use (re's cache), not at import: the authorizer only writes contexts.
_ROLE_SPLIT: Final = r"[,\s]+"
_MAX_ROLES_CHARS: Final = 4096
_MAX_ROLES: Final = 64
_MAX_NUMBER_CHARS: Final = 32


def flat_context(
    claims: AccessClaims, *, session_checked: bool, roles: tuple[str, ...] | None = None
) -> dict[str, ContextValue]:
    """``AuthorizerContext.from_claims(...).to_context()`` in one step (the authorizer's
    answer, on every allowed request)."""
    return _flat(
        claims.subject,
        claims.session_id,
        claims.email,
        claims.roles if roles is None else roles,
        claims.token_id,
        claims.expires_at,
        session_checked,
    )


def _flat(
    user_id: str,
    session_id: str,
    email: str | None,
    roles: tuple[str, ...],
    token_id: str | None,
    expires_at: int | None,
    session_checked: bool,
) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {
        "user_id": user_id,
        "email": email or "",
        "roles": ",".join(roles),
        "session_id": session_id,
    }
    if token_id is not None:
        context["token_id"] = token_id
    if expires_at is not None:
        context["expires_at"] = expires_at
    context["session_checked"] = session_checked
    return context


class Unauthenticated(Rejected):
    """A protected route was reached without a usable authorizer context."""

    code = "unauthenticated"


class AuthorizerContext:
    """Who is calling, as the authorizer vouched for them. Immutable by convention.

    (A plain class, not a dataclass: it is defined on the authorizer's cold start, where
    building a dataclass costs about a millisecond.)"""

    __slots__ = (
        "email",
        "expires_at",
        "roles",
        "session_checked",
        "session_id",
        "token_id",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        session_id: str,
        email: str | None,
        roles: tuple[str, ...],
        token_id: str | None = None,
        expires_at: int | None = None,
        session_checked: bool = False,
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.email = email
        self.roles = roles
        self.token_id = token_id
        self.expires_at = expires_at
        self.session_checked = session_checked

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuthorizerContext):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"AuthorizerContext({fields})"

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @classmethod
    def from_claims(
        cls,
        claims: AccessClaims,
        *,
        session_checked: bool,
        roles: tuple[str, ...] | None = None,
    ) -> AuthorizerContext:
        """The context of an allowed request (the producer: the authorizer); ``roles``
        replaces the token's (the ones the user still holds, when the session was checked)."""
        return cls(
            user_id=claims.subject,
            session_id=claims.session_id,
            email=claims.email or None,
            roles=tuple(claims.roles) if roles is None else roles,
            token_id=claims.token_id,
            expires_at=claims.expires_at,
            session_checked=session_checked,
        )

    def to_context(self) -> dict[str, ContextValue]:
        """The flat context of an HTTP API simple response or a REST policy (``email`` is
        ``""`` when there is none; a context value cannot be null)."""
        return _flat(
            self.user_id,
            self.session_id,
            self.email,
            self.roles,
            self.token_id,
            self.expires_at,
            self.session_checked,
        )

    @classmethod
    def from_context(
        cls, context: object, *, now: float, leeway_seconds: float = 0
    ) -> AuthorizerContext:
        """The caller named by ``context`` (the consumers: the routes). ``expires_at``, when
        present, is enforced with the leeway the authorizer allowed (CLOCK_SKEW_LEEWAY_SECONDS),
        so a token inside the leeway is not allowed by the authorizer and refused here."""
        if not isinstance(context, Mapping):
            raise Unauthenticated("no authorizer context")
        user_id = context.get("user_id")
        session_id = context.get("session_id")
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise Unauthenticated("authorizer context has no valid user_id")
        if not isinstance(session_id, str) or not is_valid_session_id(session_id):
            raise Unauthenticated("authorizer context has no valid session_id")
        expires_at: int | None = None
        raw_expiry = context.get("expires_at")
        if raw_expiry is not None:
            deadline = _number(raw_expiry)
            if deadline is None or now >= deadline + leeway_seconds:
                raise Unauthenticated("authorizer context has expired")
            expires_at = math.floor(deadline)
        email = context.get("email")
        token_id = context.get("token_id")
        return cls(
            user_id=user_id,
            session_id=session_id,
            email=email if isinstance(email, str) and email else None,
            roles=_roles(context.get("roles")),
            token_id=token_id if is_valid_session_id(token_id) else None,
            expires_at=expires_at,
            session_checked=context.get("session_checked") is True,
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) <= _MAX_NUMBER_CHARS:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _roles(value: object) -> tuple[str, ...]:
    """Roles arrive comma-joined (context values are strings); a list is accepted too."""
    if isinstance(value, str):
        items: list[object] = list(re.split(_ROLE_SPLIT, value[:_MAX_ROLES_CHARS]))
    elif isinstance(value, list):
        items = list(value[:_MAX_ROLES])
    else:
        return ()
    roles = {item.strip() for item in items if isinstance(item, str) and item.strip()}
    return tuple(sorted(roles))


__all__ = ["AuthorizerContext", "ContextValue", "Unauthenticated", "flat_context"]
