"""What the run knows about its users, their browsers and their sessions, and what it saw.

Each user belongs to exactly one client thread, which is the only one to change that user's
devices and sessions (an admin's revocation of a user is carried out by the user's own
thread), so the model needs no lock per user. What several threads record (refresh answers,
probes, rotation checks) goes into ``Observations`` under its lock.

Session labels (``u017.d2.s3``) name sessions in the run's output; session ids, tokens and
passwords never appear there.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

# Why the run itself ended a session (the only endings invariant 2 accepts).
LOGOUT: Final = "logout"
DELETED: Final = "deleted"
REVOKE_ALL: Final = "revoke_all"
ADMIN: Final = "admin"
REUSE: Final = "reuse"
EVICTED: Final = "evicted"
# What the session item says after each (tokencore's revocation reasons). A user-wide
# revocation that the index missed is completed at the next refresh as "revoke_all".
STORED_REASONS: Final = {
    LOGOUT: frozenset({"logout"}),
    DELETED: frozenset({"user_revoked"}),
    REVOKE_ALL: frozenset({"revoke_all"}),
    ADMIN: frozenset({"admin", "revoke_all"}),
    REUSE: frozenset({"refresh_reuse"}),
    EVICTED: frozenset({"evicted"}),
}


@dataclass(eq=False)
class SessionRecord:
    label: str
    session_id: str
    user: User
    device: Device
    phase: str  # the phase it was created in
    refresh: str = field(repr=False)
    access: str = field(repr=False)
    fingerprint: str | None = field(default=None, repr=False)
    first_access: str = field(default="", repr=False)  # the access token of the login
    first_access_expires: float = 0.0
    lineage: list[str] = field(default_factory=list, repr=False)  # refresh tokens, oldest first
    ended: str | None = None  # the reason the run ended it
    ended_uncertain: bool = False  # a revocation answered 503: it may or may not have happened
    refresh_uncertain: bool = False  # a refresh answered 503: the token may now be the previous
    # Its unanswered refresh was never settled inside the grace window (its retry came later and
    # met reuse detection, or none came): an ending the fault and the design made together.
    refresh_unresolved: bool = False
    noticed_dead: str | None = None  # what answered 401 while the run believed it alive

    @property
    def live(self) -> bool:
        """The run believes it alive (it did not end it, nor try to)."""
        return self.ended is None and not self.ended_uncertain


@dataclass(eq=False)
class Device:
    """One browser of a user: holds at most one session at a time."""

    user: User
    index: int
    device_id: str | None
    session: SessionRecord | None = None


@dataclass(eq=False)
class User:
    username: str
    password: str = field(repr=False)
    label: str
    roles: tuple[str, ...] = ()
    user_id: str | None = None  # learned from the first token's subject
    devices: list[Device] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    exceeds_cap: bool = False  # the run logs in more devices than the session cap on purpose

    def live_sessions(self) -> list[SessionRecord]:
        return [session for session in self.sessions if session.live]

    def seed_entry(self) -> str:
        roles = ",".join(self.roles)
        return f"{self.username}:{self.password}" + (f":{roles}" if roles else "")


@dataclass(frozen=True, slots=True)
class RevokedIdentity:
    """What a client still holds of a session the run ended: tried on sensitive routes."""

    label: str
    session_id: str = field(repr=False)
    access: str = field(repr=False)
    fingerprint: str | None = field(repr=False)
    device_id: str | None
    user_id: str
    reason: str
    admin: bool
    access_expires: float


@dataclass(frozen=True, slots=True)
class Probe:
    label: str
    route: str
    status: int
    reason: str  # how the run ended the session
    phase: str


@dataclass(frozen=True, slots=True)
class Successor:
    """A refresh token's successor, by what makes it one: session, token id, generation."""

    session_id: str
    token_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class StaleReplay:
    label: str
    status: int


@dataclass(frozen=True, slots=True)
class KeyCheck:
    what: str  # "old token still passes" / "new token on the new key"
    label: str
    passed: bool
    detail: str


class Observations:
    """What client threads saw that the invariants need beyond the exchanges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # presented refresh token -> the answers it got, and the successors of its 200s
        self.refresh_statuses: dict[str, list[int]] = defaultdict(list)
        self.successors: dict[str, set[Successor]] = defaultdict(set)
        self.refresh_labels: dict[str, str] = {}
        self.races = 0
        self.probes: list[Probe] = []
        self.stale_replays: list[StaleReplay] = []
        self.key_checks: list[KeyCheck] = []
        self.minted: list[tuple[str, str, str, str]] = []  # (phase, label, access kid, rt kid)
        self.notes: dict[str, int] = defaultdict(int)  # unexpected but not invariant-breaking

    def refresh_answer(
        self, presented: str, label: str, status: int, successor: Successor | None
    ) -> None:
        with self._lock:
            self.refresh_statuses[presented].append(status)
            self.refresh_labels[presented] = label
            if successor is not None:
                self.successors[presented].add(successor)

    def race(self) -> None:
        with self._lock:
            self.races += 1

    def probe(self, probe: Probe) -> None:
        with self._lock:
            self.probes.append(probe)

    def stale(self, replay: StaleReplay) -> None:
        with self._lock:
            self.stale_replays.append(replay)

    def key_check(self, check: KeyCheck) -> None:
        with self._lock:
            self.key_checks.append(check)

    def mint(self, phase: str, label: str, access_kid: str, refresh_kid: str) -> None:
        with self._lock:
            self.minted.append((phase, label, access_kid, refresh_kid))

    def note(self, what: str) -> None:
        with self._lock:
            self.notes[what] += 1


class Budget:
    """A pool of requests that threads draw from (thread-safe)."""

    def __init__(self, total: int) -> None:
        self._lock = threading.Lock()
        self._left = total

    def take(self, count: int = 1) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= count
            return True

    @property
    def left(self) -> int:
        with self._lock:
            return self._left
