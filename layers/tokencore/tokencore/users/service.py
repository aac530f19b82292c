"""Account operations: create, authenticate, read for refresh, roles, disable, password change.

Two rules shape this module:

* Enumeration resistance. An unknown username, a malformed one, a wrong password and a disabled
  account all end in the same ``InvalidCredentials`` with the same message, after exactly one
  Argon2 verify each. For a disabled account with the right password the exception's
  ``__cause__`` is ``UserDisabled``, so audit logs and metrics can tell the cases apart while the
  client cannot (it would otherwise learn that a guessed password is right).
* Fail closed on account changes. Disabling a user or changing a password writes the user FIRST,
  then revokes every session. If revocation fails the change stays and the error propagates:
  the caller retries (both steps are idempotent), and in the meantime no refresh can succeed,
  because refresh re-reads the user (``get_user``) and sees the disabled flag or the new
  ``password_changed_at``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

from argon2 import PasswordHasher

from tokencore.audit import hash_identifier, security_event
from tokencore.clock import Clock
from tokencore.errors import (
    InvalidCredentials,
    InvalidRequest,
    StoreUnavailable,
    UserDisabled,
    UserNotFound,
)
from tokencore.users.base import (
    User,
    UserStore,
    display_username,
    normalize_username,
    validate_email,
    validate_roles,
)
from tokencore.users.passwords import Passwords, validate_password

logger = logging.getLogger(__name__)

REASON_USER_DISABLED = "user_disabled"
REASON_PASSWORD_CHANGED = "password_changed"

# One message for every failed login, so neither the type nor the text is an oracle.
INVALID_CREDENTIALS_MESSAGE = "invalid username or password"


class SessionRevoker(Protocol):
    """What the session store offers us: revoke all of a user's sessions, idempotently.

    Returns how many sessions it revoked; raises StoreUnavailable when it could not finish.
    """

    def revoke_user_sessions(self, user_id: str, reason: str) -> int: ...


class _RevokesAll(Protocol):
    def revoke_all(self, user_id: str, reason: str) -> int: ...


class RevokeAllSessions:
    """Adapts a session store whose bulk revocation is ``revoke_all(user_id, reason)`` (the
    tokencore.sessions interface) to SessionRevoker, without importing it here."""

    def __init__(self, sessions: _RevokesAll) -> None:
        self._sessions = sessions

    def revoke_user_sessions(self, user_id: str, reason: str) -> int:
        return self._sessions.revoke_all(user_id, reason)


class UserService:
    def __init__(
        self,
        store: UserStore,
        session_revoker: SessionRevoker,
        clock: Clock,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._store = store
        self._revoker = session_revoker
        self._clock = clock
        self._passwords = Passwords(hasher)

    @property
    def passwords(self) -> Passwords:
        return self._passwords

    @property
    def store(self) -> UserStore:
        return self._store

    def create_user(
        self,
        username: str,
        password: str,
        email: str | None = None,
        roles: Iterable[str] = (),
    ) -> User:
        """Create an account. Raises InvalidRequest for a bad field, UserExists when the
        normalized username is taken (in any case or Unicode form)."""
        normalized = normalize_username(username)
        display = display_username(username)
        checked_roles = validate_roles(roles)
        checked_email = validate_email(email)
        password_hash = self._passwords.hash(password)  # validates before the Argon2 work
        now = self._clock.now()
        user = User(
            user_id=str(uuid.uuid4()),
            username=display,
            normalized_username=normalized,
            email=checked_email,
            password_hash=password_hash,
            roles=checked_roles,
            disabled=False,
            password_changed_at=now,
            created_at=now,
        )
        self._store.create(user)
        logger.info(
            "user created", extra={"user_id_hash": _h(user.user_id), "code": "user_created"}
        )
        return user

    def authenticate(self, username: str, password: str) -> User:
        """The user whose password this is. Every failure is the same InvalidCredentials after
        one Argon2 verify; an over-long or empty password is InvalidRequest before any lookup
        (its answer does not depend on the account, so it reveals nothing)."""
        validate_password(password)
        try:
            user: User | None = self._store.get_by_username(username)
        except (InvalidRequest, UserNotFound):
            user = None  # a name that could never be registered is just an unknown user
        return self.check_password(user, password)

    def check_password(self, user: User | None, password: str) -> User:
        """``authenticate`` for a user the caller has already read by name (None: nobody holds
        the name), as the login flow does in the same round trip as its rate limits."""
        validate_password(password)
        if user is None:
            self._passwords.verify_dummy(password)
            raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE)

        if not self._passwords.verify(user.password_hash, password):
            raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE)

        if user.disabled:
            logger.warning(
                "login refused", extra={"user_id_hash": _h(user.user_id), "code": UserDisabled.code}
            )
            raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE) from UserDisabled()

        if self._passwords.needs_rehash(user.password_hash):
            user = self._rehash(user, password)
        return user

    def get_user(self, user_id: str, *, include_disabled: bool = False) -> User:
        """Re-read a user (consistently), e.g. at each refresh, so role changes and disabling
        take effect there. Raises UserNotFound, and UserDisabled unless ``include_disabled``
        (for admin tools): by default a disabled account is never handed out."""
        user = self._store.get(user_id)
        if user.disabled and not include_disabled:
            raise UserDisabled("user is disabled")
        return user

    def set_roles(self, user_id: str, roles: Iterable[str]) -> User:
        """Replace the user's roles (a ``roles_changed`` security event). A removed role stops
        counting at the next request that checks the session (the authorizer keeps only the
        roles the user still holds; role-gated routes always check); the next refresh mints
        tokens with the new set. No revocation: a role change is not a breach."""
        before = self._store.get(user_id).roles
        user = self._store.set_roles(user_id, roles)
        # ``before`` is read ahead of the write: two racing changes may each report the other's
        # roles as theirs; the event is a record, never a decision.
        security_event(
            "roles_changed",
            user_id=user_id,
            added=sorted(set(user.roles) - set(before)),
            removed=sorted(set(before) - set(user.roles)),
        )
        return user

    def disable_user(self, user_id: str) -> int:
        """Disable the account, then revoke all its sessions; returns how many were revoked.
        Write first, revoke second: if revocation fails the account stays disabled and the
        error propagates (retry the call)."""
        self._store.set_disabled(user_id, True)
        logger.info(
            "user disabled", extra={"user_id_hash": _h(user_id), "code": REASON_USER_DISABLED}
        )
        return self._revoke_every_session(user_id, REASON_USER_DISABLED)

    def revoke_all_sessions(self, user_id: str, reason: str) -> int:
        """Revoke every session of the user; returns how many the bulk revocation found.

        Same ordering rule as ``disable_user``: the user's ``sessions_revoked_at`` is written
        first, so a session the eventually consistent index hides from the bulk revocation (one
        created moments ago) is still refused at its next refresh. If revocation fails, the
        marker stays and the error propagates (retry the call)."""
        self._store.mark_sessions_revoked(user_id, self._clock.now())
        return self._revoker.revoke_user_sessions(user_id, reason)

    def enable_user(self, user_id: str) -> User:
        """Re-enable the account. Sessions revoked by disabling stay revoked."""
        user = self._store.set_disabled(user_id, False)
        logger.info("user enabled", extra={"user_id_hash": _h(user_id), "code": "user_enabled"})
        return user

    def change_password(self, user_id: str, new_password: str) -> User:
        """Set a new password (hash and ``password_changed_at``), then revoke all sessions.
        Same ordering rule as ``disable_user``. Checking the current password, where the user
        changes it themselves, is the caller's job (``authenticate`` first)."""
        password_hash = self._passwords.hash(new_password)
        user = self._store.set_password(user_id, password_hash, self._clock.now())
        logger.info(
            "password changed", extra={"user_id_hash": _h(user_id), "code": REASON_PASSWORD_CHANGED}
        )
        self._revoke_every_session(user_id, REASON_PASSWORD_CHANGED)
        return user

    def _revoke_every_session(self, user_id: str, reason: str) -> int:
        """The second step of a change that ends every session (disable, password change)."""
        revoked = self._revoker.revoke_user_sessions(user_id, reason)
        security_event(
            "sessions_revoked", level=logging.INFO, reason=reason, count=revoked, user_id=user_id
        )
        return revoked

    def _rehash(self, user: User, password: str) -> User:
        """Upgrade an old-parameter hash after a successful login. Best effort: a failed write
        only postpones the upgrade to the next login, so it must not fail the login. The swap
        is conditional on the hash we verified, so it can never undo a password change."""
        new_hash = self._passwords.hash(password)
        try:
            swapped = self._store.replace_password_hash(user.user_id, user.password_hash, new_hash)
        except StoreUnavailable:
            logger.warning(
                "password rehash postponed",
                extra={"user_id_hash": _h(user.user_id), "code": StoreUnavailable.code},
            )
            return user
        if not swapped:
            # The stored hash changed after we read it: the password was changed (and the
            # sessions revoked) while we verified the old one. Deny rather than let a login
            # with the superseded password slip in after the revocation.
            raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE)
        logger.info(
            "password rehashed", extra={"user_id_hash": _h(user.user_id), "code": "rehashed"}
        )
        return _with_hash(user, new_hash)


def _h(user_id: str) -> str:
    """User ids in log lines are hashed, as in security events (``audit.hash_identifier``)."""
    return hash_identifier(user_id)


def _with_hash(user: User, password_hash: str) -> User:
    return dataclasses.replace(user, password_hash=password_hash)
