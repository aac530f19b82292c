"""The session check: a session and its user, read together, judged by one rule.

A request checked against the store (the authorizer's sensitive, high-security and sampled
path) passes only if its session is in good standing: active and unexpired, owned by the
token's subject, whose account exists, is enabled, and has had no user-wide revocation (revoke
all, password change) since the session was created. Reading the user with the session closes
the gap a bulk revocation leaves: it finds sessions through an eventually consistent index, so a
session whose login raced it (created before it, written after its query, or not yet indexed)
escapes it, and only the user's marker still names it. Refresh applies the same rule
(``ended_by``) to the user it re-reads.

Only the standing fields are read (``SessionStanding``, ``UserStanding``): the authorizer, which
runs this, never reads a password hash or a refresh-token id. On DynamoDB that is ONE strongly
consistent BatchGetItem of both items with a projection, when both stores share a table (the
deployed layout; the template's IAM allows exactly those attributes); otherwise one read per
store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final, Protocol

from tokencore.awsclient import batch_get_items
from tokencore.errors import (
    SessionNotFound,
    SessionRevoked,
    SessionUserMismatch,
    UserDisabled,
    UserNotFound,
)
from tokencore.sessions.base import (
    REASON_REVOKE_ALL,
    SessionStanding,
    SessionStore,
)
from tokencore.sessions.dynamodb import STANDING_ATTRIBUTES as SESSION_ATTRIBUTES
from tokencore.sessions.dynamodb import DynamoDBSessionStore
from tokencore.users.base import UserStanding, UserStore
from tokencore.users.dynamodb import STANDING_ATTRIBUTES as USER_ATTRIBUTES
from tokencore.users.dynamodb import DynamoDBUserStore
from tokencore.users.service import REASON_PASSWORD_CHANGED, REASON_USER_DISABLED
from tokencore.wire import is_valid_session_id, is_valid_user_id

# Both items come back from one projection (BatchGetItem takes one per table).
STANDING_ATTRIBUTES: Final = tuple(dict.fromkeys((*SESSION_ATTRIBUTES, *USER_ATTRIBUTES)))
_WHAT: Final = "session check"


class _UserMarkers(Protocol):
    @property
    def password_changed_at(self) -> float: ...
    @property
    def sessions_revoked_at(self) -> float: ...


class _Created(Protocol):
    @property
    def created_at(self) -> float: ...


class SessionEndedForUser(SessionRevoked):
    """A user-wide revocation (revoke-all, password change) or a disabled account ended the
    session, whatever its own record says."""

    code = "session_ended"

    def __init__(self, reason: str) -> None:
        super().__init__(f"session ended for its user ({reason})")
        self.reason = reason


def ended_by(user: _UserMarkers, session: _Created) -> str | None:
    """The reason a user-wide revocation ended this session, or None if none did."""
    if user.password_changed_at > session.created_at:
        return REASON_PASSWORD_CHANGED
    if user.sessions_revoked_at > session.created_at:
        return REASON_REVOKE_ALL
    return None


def require_good_standing(
    session: SessionStanding, user: UserStanding | None, subject: str, now: float
) -> None:
    """Raise the rejection that says why ``session`` may not serve ``subject`` now."""
    session.require_active(now)
    if session.user_id != subject:
        raise SessionUserMismatch("session belongs to another user")
    if user is None:
        raise UserNotFound("the session's user no longer exists")
    if user.disabled:
        raise SessionEndedForUser(REASON_USER_DISABLED) from UserDisabled()
    reason = ended_by(user, session)
    if reason is not None:
        raise SessionEndedForUser(reason)


class SessionReader(ABC):
    """Reads what a session check needs of a session and of the user it should belong to."""

    @abstractmethod
    def read(
        self, session_id: str, user_id: str
    ) -> tuple[SessionStanding | None, UserStanding | None]:
        """The session (None: no such item) and the user (None: no such user), read
        consistently. Store failures raise StoreUnavailable."""

    def check(
        self, session_id: str, subject: str, now: float
    ) -> tuple[SessionStanding, UserStanding]:
        """The session and its user, if the session is in good standing for ``subject`` (else
        the rejection). The user's roles are the ones it holds now, not the token's."""
        session, user = self.read(session_id, subject)
        if session is None:
            raise SessionNotFound()
        require_good_standing(session, user, subject, now)
        if user is None:  # require_good_standing refuses a missing user; this tells mypy
            raise UserNotFound("the session's user no longer exists")
        return session, user


class SeparateReads(SessionReader):
    """One read per store (the in-memory backends, or stores on different tables)."""

    def __init__(self, sessions: SessionStore, users: UserStore) -> None:
        self._sessions = sessions
        self._users = users

    def read(
        self, session_id: str, user_id: str
    ) -> tuple[SessionStanding | None, UserStanding | None]:
        try:
            session = self._sessions.get_session(session_id, active_only=False).standing
        except SessionNotFound:
            return None, None
        try:
            return session, self._users.get(user_id).standing
        except UserNotFound:
            return session, None


class BatchedReads(SessionReader):
    """Both items in ONE consistent BatchGetItem, standing attributes only."""

    def __init__(self, sessions: DynamoDBSessionStore, users: DynamoDBUserStore) -> None:
        self._sessions = sessions
        self._users = users

    def read(
        self, session_id: str, user_id: str
    ) -> tuple[SessionStanding | None, UserStanding | None]:
        if not (is_valid_session_id(session_id) and is_valid_user_id(user_id)):
            return None, None  # never a key we could have written
        session_item, profile_item = batch_get_items(
            self._sessions.lazy_client,
            self._sessions.table_name,
            [self._sessions.item_key(session_id), self._users.profile_key(user_id)],
            what=_WHAT,
            attributes=STANDING_ATTRIBUTES,
        )
        return (
            None if session_item is None else self._sessions.standing_from_item(session_item),
            None if profile_item is None else self._users.standing_from_profile(profile_item),
        )


def session_reader_for(sessions: SessionStore, users: UserStore) -> SessionReader:
    """The batched reader when both stores are DynamoDB backends on one table, separate reads
    otherwise."""
    if (
        isinstance(sessions, DynamoDBSessionStore)
        and isinstance(users, DynamoDBUserStore)
        and sessions.table_name == users.table_name
    ):
        return BatchedReads(sessions, users)
    return SeparateReads(sessions, users)


__all__ = [
    "STANDING_ATTRIBUTES",
    "BatchedReads",
    "SeparateReads",
    "SessionEndedForUser",
    "SessionReader",
    "ended_by",
    "require_good_standing",
    "session_reader_for",
]
