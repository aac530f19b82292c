"""Session management: list a user's sessions, revoke one, revoke all, revoke as an admin.

One flow per operation, used alike by the revoker's routes (``functions/revoker``) and the
operator CLI (``tokenctl revoke-session``, ``revoke-user``), so both write the same records and
emit the same security events (``tokencore.audit``). Each returns what its callers count.

Revoking every session of a user, in this order (``revoke_all``):

1. the user's ``sessions_revoked_at`` marker (``UserService.revoke_all_sessions``): from now on
   no session created before it passes a session check or a refresh, whatever the index shows;
2. every session the ``by_user`` index lists (eventually consistent: a session created within
   about a second may be missing);
3. the caller's own current session, by id, so the very session that asked is revoked at once
   even when the index has not shown it yet (the index-lag fix).

A failure part-way raises and leaves what is done done (every step is idempotent): the caller
retries, and until then the marker already refuses the user's sessions at the session check.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

from tokencore.audit import hash_identifier, security_event
from tokencore.errors import SessionNotFound
from tokencore.sessions.base import REASON_ADMIN, REASON_REVOKE_ALL, Session, SessionStore
from tokencore.users.service import UserService

# The caller ended one of their own sessions from the session list.
REASON_USER_REVOKED: Final = "user_revoked"


class SessionService:
    def __init__(self, sessions: SessionStore, users: UserService) -> None:
        self._sessions = sessions
        self._users = users

    def list_sessions(self, user_id: str) -> list[Session]:
        """The user's active, unexpired sessions, oldest first."""
        return self._sessions.list_sessions(user_id)

    def revoke_session(self, session_id: str, reason: str, *, owner: str | None = None) -> bool:
        """Revoke one session; True if this call revoked it, False if it already was.

        With ``owner``, a session of anyone else is ``SessionNotFound``, exactly like an
        unknown id, so a caller cannot probe for other users' session ids. Without it (an
        operator), any session. The event is emitted only when this call revoked it."""
        revoked = self._sessions.revoke(session_id, reason, user_id=owner)
        if revoked:
            security_event(
                "session_revoked",
                level=logging.INFO,
                reason=reason,
                user_id=owner,
                session_id=session_id,
            )
        return revoked

    def revoke_all(
        self,
        user_id: str,
        reason: str = REASON_REVOKE_ALL,
        *,
        current_session_id: str | None = None,
    ) -> int:
        """Revoke every session of ``user_id`` (the module docstring's three steps); returns how
        many this call revoked."""
        revoked = self._users.revoke_all_sessions(user_id, reason)
        if current_session_id is not None:
            with contextlib.suppress(SessionNotFound):
                revoked += self._sessions.revoke(current_session_id, reason, user_id=user_id)
        security_event(
            "sessions_revoked", level=logging.INFO, reason=reason, count=revoked, user_id=user_id
        )
        return revoked

    def admin_revoke(self, user_id: str, *, admin_id: str | None = None) -> int:
        """Revoke every session of another user, as an admin (``admin_id``) or the operator
        (None). ``UserNotFound`` for a user that does not exist (disabled ones do). Logged at
        WARNING: someone ended another person's sessions."""
        self._users.get_user(user_id, include_disabled=True)
        revoked = self._users.revoke_all_sessions(user_id, REASON_ADMIN)
        security_event(
            "sessions_revoked",
            reason=REASON_ADMIN,
            count=revoked,
            user_id=user_id,
            actor="admin" if admin_id is not None else "operator",
            admin=hash_identifier(admin_id) if admin_id is not None else None,
        )
        return revoked


__all__ = ["REASON_USER_REVOKED", "SessionService"]
