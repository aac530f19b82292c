"""The in-memory session store: the contract's reference backend for tests and local runs.

One lock makes every primitive atomic, so the conditional writes behave as DynamoDB's do under
threads. Items are immutable Sessions, so nothing handed out can be changed behind the lock.
Nothing is ever deleted (there is no TTL sweeper): reads check expiry, as they must on DynamoDB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings
from tokencore.sessions.base import (
    STATUS_ACTIVE,
    Revocation,
    Rotation,
    Session,
    SessionStore,
    WriteOutcome,
    index_sort_key,
)


class InMemorySessionStore(SessionStore):
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(settings, clock)
        self._lock = threading.Lock()
        self._items: dict[str, Session] = {}

    def _insert(self, session: Session) -> WriteOutcome:
        with self._lock:
            existing = self._items.get(session.session_id)
            if existing is not None:
                return WriteOutcome(applied=False, session=existing)
            self._items[session.session_id] = session
            return WriteOutcome(applied=True, session=session)

    def _read(self, session_id: str) -> Session | None:
        with self._lock:
            return self._items.get(session_id)

    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        with self._lock:
            current = self._items.get(rotation.session_id)
            if current is None or not rotation.allowed_on(current):
                return WriteOutcome(applied=False, session=current)
            updated = self._items[rotation.session_id] = rotation.apply_to(current)
            return WriteOutcome(applied=True, session=updated)

    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        with self._lock:
            current = self._items.get(revocation.session_id)
            if current is None or not revocation.allowed_on(current):
                return WriteOutcome(applied=False, session=current)
            updated = self._items[revocation.session_id] = revocation.apply_to(current)
            return WriteOutcome(applied=True, session=updated)

    def _iter_user_sessions(self, user_id: str) -> Iterator[Session]:
        with self._lock:  # a snapshot, like one page of a query
            sessions = [
                s
                for s in self._items.values()
                if s.user_id == user_id and s.status == STATUS_ACTIVE
            ]
        return iter(sorted(sessions, key=index_sort_key))
