"""In-memory user store: tests, `make dev` seeding, and the reference for the DynamoDB backend.

One lock guards both maps, so the username claim and the profile appear together, exactly as
the DynamoDB transaction makes them appear.
"""

from __future__ import annotations

import threading

from tokencore.errors import UserExists, UserNotFound
from tokencore.users.base import User, UserChanges, UserPage, UserStore, UserSummary


class InMemoryUserStore(UserStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        self._claims: dict[str, str] = {}  # normalized username -> user_id

    def _insert(self, user: User) -> None:
        with self._lock:
            if user.normalized_username in self._claims:
                raise UserExists("username is taken")
            if user.user_id in self._users:
                raise UserExists("user id is taken")
            self._claims[user.normalized_username] = user.user_id
            self._users[user.user_id] = user

    def _load(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def _load_by_username(self, normalized_username: str) -> User | None:
        with self._lock:
            user_id = self._claims.get(normalized_username)
            return None if user_id is None else self._users.get(user_id)

    def _list(self, limit: int, cursor: str | None) -> UserPage:
        """In user id order; the cursor is the last id of the previous page."""
        with self._lock:
            after = sorted(uid for uid in self._users if cursor is None or uid > cursor)
            page = [UserSummary.of(self._users[uid]) for uid in after[:limit]]
        more = len(after) > limit
        return UserPage(tuple(page), page[-1].user_id if more else None)

    def _update(self, user_id: str, changes: UserChanges) -> User:
        with self._lock:
            current = self._users.get(user_id)
            if current is None:
                raise UserNotFound("user not found")
            updated = changes.apply_to(current)
            self._users[user_id] = updated
            return updated

    def _swap_password_hash(self, user_id: str, expected_hash: str, new_hash: str) -> bool:
        with self._lock:
            current = self._users.get(user_id)
            if current is None or current.password_hash != expected_hash:
                return False
            self._users[user_id] = UserChanges(password_hash=new_hash).apply_to(current)
            return True

    def _raise_sessions_revoked_at(self, user_id: str, at: float) -> User:
        with self._lock:
            current = self._users.get(user_id)
            if current is None:
                raise UserNotFound("user not found")
            if at <= current.sessions_revoked_at:
                return current
            updated = self._users[user_id] = UserChanges(sessions_revoked_at=at).apply_to(current)
            return updated
