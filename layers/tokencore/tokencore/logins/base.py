"""What a login reads and writes, in as few round trips as the backend allows.

A login touches three stores: the rate-limit counters (per source address, per username), the
user (by name) and the new session. Asked one by one that is six round trips (two counter
writes, the name, the profile, the session, the session cap). The login store asks them
together:

1. ``look_up``: ONE read of the user by name and of every counter. A window already at its
   limit refuses the attempt here, before any Argon2 work.
2. After the password check, ONE write:
   * ``record_success``: every counter incremented on the condition that it is still under its
     limit, and the session inserted, all or nothing. Two attempts racing for a window's last
     slot cannot both pass; a refused attempt leaves no session behind; and no session is ever
     written without its attempt being counted.
   * ``record_failure``: every counter incremented (no condition: a failure always counts).

The session cap's query follows as the third and last call (tokencore.sessions). Each backend
keeps its own item formats: this module only puts their requests in the same round trip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from tokencore.ratelimit.base import RateLimiter, RateWindow
from tokencore.sessions.base import Session, SessionStore
from tokencore.users.base import User, UserStore


class LoginStore(ABC):
    def look_up(
        self, normalized_username: str | None, windows: Sequence[RateWindow]
    ) -> User | None:
        """The user holding the name (None when nobody does, or the name could not be
        normalized), after checking every window: RateLimited names the first one at its
        limit. Reads only."""
        user, full = self._read(normalized_username, windows)
        if full is not None:
            raise full.refusal()
        return user

    @abstractmethod
    def _read(
        self, normalized_username: str | None, windows: Sequence[RateWindow]
    ) -> tuple[User | None, RateWindow | None]:
        """The user holding the name, and the first window at its limit (or None)."""

    @abstractmethod
    def record_success(self, windows: Sequence[RateWindow], session: Session) -> None:
        """Count the attempt in every window while each is under its limit and insert the
        session, all or nothing. RateLimited (nothing written) when a window filled since
        ``look_up``; StoreConflict when the write lost a race a retry can win."""

    @abstractmethod
    def record_failure(self, windows: Sequence[RateWindow]) -> None:
        """Count a failed attempt in every window."""


def login_store_for(
    users: UserStore, rate_limiter: RateLimiter, sessions: SessionStore
) -> LoginStore:
    """The DynamoDB login store when all three stores are DynamoDB backends on one table, the
    composed one otherwise."""
    from tokencore.logins.composed import ComposedLoginStore
    from tokencore.logins.dynamodb import DynamoDBLoginStore
    from tokencore.ratelimit.dynamodb import DynamoDBRateLimiter
    from tokencore.sessions.dynamodb import DynamoDBSessionStore
    from tokencore.users.dynamodb import DynamoDBUserStore

    if (
        isinstance(users, DynamoDBUserStore)
        and isinstance(rate_limiter, DynamoDBRateLimiter)
        and isinstance(sessions, DynamoDBSessionStore)
        and users.table_name == rate_limiter.table_name == sessions.table_name
    ):
        return DynamoDBLoginStore(users, rate_limiter, sessions)
    return ComposedLoginStore(users, rate_limiter, sessions)
