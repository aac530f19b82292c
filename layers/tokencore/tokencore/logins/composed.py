"""The login store over any three stores, one call per store (the in-memory backends).

Not atomic across stores: the counters are admitted before the session is inserted, so a
failed insert leaves the attempt counted, which errs on the closed side.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokencore.logins.base import LoginStore
from tokencore.ratelimit.base import RateLimiter, RateWindow
from tokencore.sessions.base import Session, SessionStore
from tokencore.users.base import User, UserStore


class ComposedLoginStore(LoginStore):
    def __init__(self, users: UserStore, rate_limiter: RateLimiter, sessions: SessionStore) -> None:
        self._users = users
        self._rate_limiter = rate_limiter
        self._sessions = sessions

    def _read(
        self, normalized_username: str | None, windows: Sequence[RateWindow]
    ) -> tuple[User | None, RateWindow | None]:
        full = self._rate_limiter.full_window(windows)
        if normalized_username is None:
            return None, full
        return self._users.find_normalized(normalized_username), full

    def record_success(self, windows: Sequence[RateWindow], session: Session) -> None:
        self._rate_limiter.admit(windows)
        self._sessions.insert_new(session)

    def record_failure(self, windows: Sequence[RateWindow]) -> None:
        self._rate_limiter.count(windows)
