"""The session store: one algorithm here, I/O in the backends (DynamoDB, in memory).

Like Powertools' idempotency persistence layer, this base class owns every decision (rotation,
grace replays, reuse detection, the session cap, expiry) and each backend implements five small
primitives. A backend's conditional writes must be atomic: ``Rotation.allowed_on`` and
``Revocation.allowed_on`` are the conditions, written once here as predicates (the in-memory
backend evaluates them under its lock; the DynamoDB backend states the same conditions as a
ConditionExpression). One contract test suite runs against every backend.

Times: events (``created_at``, ``last_activity``, rotation and revocation times) are exact clock
readings; deadlines are whole epoch seconds, because they become a refresh token's ``exp`` and the
table's TTL. A deadline is passed *at* that second (``now >= deadline``), as for a JWT ``exp``.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from tokencore import wire
from tokencore.audit import security_event
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings
from tokencore.errors import (
    InvalidRequest,
    RefreshReuseDetected,
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
    StoreConflict,
    StoreUnavailable,
)
from tokencore.store.table import SESSION_PREFIX

logger = logging.getLogger(__name__)

SessionStatus = Literal["active", "revoked"]
STATUS_ACTIVE: Final = "active"
STATUS_REVOKED: Final = "revoked"

# Revocation reasons this package writes; callers may use others matching REASON_PATTERN.
REASON_LOGOUT: Final = "logout"
REASON_EVICTED: Final = "evicted"
REASON_REFRESH_REUSE: Final = "refresh_reuse"
REASON_REVOKE_ALL: Final = "revoke_all"
REASON_ADMIN: Final = "admin"
REASON_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")

ReuseClassification = Literal["recent_previous", "stale_lineage"]

FIRST_GENERATION: Final = 1
ID_BYTES: Final = 16  # 128 bits from the CSPRNG
USER_AGENT_MAX_CHARS: Final = 256
DEVICE_ID_MAX_CHARS: Final = wire.DEVICE_ID_MAX_CHARS
SOURCE_IP_MAX_CHARS: Final = 64


def new_session_id() -> str:
    """A fresh session id: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(ID_BYTES)


def new_jti() -> str:
    """A fresh refresh-token id: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(ID_BYTES)


def _deadline(now: float, seconds: int) -> int:
    return math.floor(now) + seconds


def _require_active(
    status: str, revoked_reason: str | None, refresh_expires_at: int, now: float
) -> None:
    if status != STATUS_ACTIVE:
        raise SessionRevoked(f"session revoked ({revoked_reason})")
    if now >= refresh_expires_at:
        raise SessionExpired()


@dataclass(frozen=True, slots=True)
class SessionStanding:
    """What a session check reads of a session (tokencore.sessioncheck): whether it is live,
    whose it is, and its device; never its refresh-token ids."""

    session_id: str
    user_id: str
    status: SessionStatus
    created_at: float
    idle_expires_at: int
    absolute_expires_at: int
    device_id: str | None = None
    revoked_reason: str | None = None

    def require_active(self, now: float) -> None:
        """Raise the rejection that says why this session is unusable, if it is."""
        deadline = min(self.idle_expires_at, self.absolute_expires_at)
        _require_active(self.status, self.revoked_reason, deadline, now)


@dataclass(frozen=True, slots=True)
class Session:
    """One login. jtis are kept out of ``repr`` so a logged Session never carries them.

    The successor issued at the last rotation is the current token itself (``current_jti``,
    ``generation``, ``refresh_expires_at``): one UpdateItem sets both it and ``previous_*``, and
    the next rotation overwrites both, so a grace replay of ``previous_jti`` always re-issues the
    current token. A second copy of it would be a second source of truth.
    """

    session_id: str
    user_id: str
    created_at: float
    last_activity: float
    # Moved forward by every rotation, deliberately *not* capped here: the cap needs the absolute
    # expiry, which a single blind UpdateItem does not know. Read refresh_expires_at instead.
    idle_expires_at: int
    absolute_expires_at: int
    current_jti: str = field(repr=False)
    generation: int
    status: SessionStatus = STATUS_ACTIVE
    device_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    security_level: int = 1
    previous_jti: str | None = field(default=None, repr=False)
    previous_generation: int | None = None
    previous_rotated_at: float | None = None
    revoked_reason: str | None = None
    revoked_at: float | None = None

    @property
    def refresh_expires_at(self) -> int:
        """The current refresh token's ``exp``: the idle deadline, capped by the absolute one."""
        return min(self.idle_expires_at, self.absolute_expires_at)

    def is_expired(self, now: float) -> bool:
        return now >= self.refresh_expires_at

    def is_active(self, now: float) -> bool:
        return self.status == STATUS_ACTIVE and not self.is_expired(now)

    def require_active(self, now: float) -> None:
        """Raise the rejection that says why this session is unusable, if it is."""
        _require_active(self.status, self.revoked_reason, self.refresh_expires_at, now)

    @property
    def standing(self) -> SessionStanding:
        return SessionStanding(
            session_id=self.session_id,
            user_id=self.user_id,
            status=self.status,
            created_at=self.created_at,
            idle_expires_at=self.idle_expires_at,
            absolute_expires_at=self.absolute_expires_at,
            device_id=self.device_id,
            revoked_reason=self.revoked_reason,
        )

    def holds_current(self, jti: str, generation: int) -> bool:
        return secrets.compare_digest(self.current_jti, jti) and self.generation == generation

    def holds_previous(self, jti: str, generation: int) -> bool:
        return (
            self.previous_jti is not None
            and secrets.compare_digest(self.previous_jti, jti)
            and self.previous_generation == generation
        )


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What the caller mints the refresh token from: the same jti/generation/exp each time.

    ``grace_replay`` is True when the immediately previous token came back inside the grace
    window and this is the successor that was already issued, not a new one.
    """

    session: Session
    jti: str = field(repr=False)
    generation: int
    refresh_expires_at: int
    grace_replay: bool

    @classmethod
    def of(cls, session: Session, *, grace_replay: bool) -> RotationResult:
        return cls(
            session=session,
            jti=session.current_jti,
            generation=session.generation,
            refresh_expires_at=session.refresh_expires_at,
            grace_replay=grace_replay,
        )


@dataclass(frozen=True, slots=True)
class ReuseEvent:
    """The security event for a detected reuse. Safe to log: no jti, no token."""

    session_id: str
    user_id: str
    device_id: str | None
    source_ip: str | None
    classification: ReuseClassification
    presented_generation: int
    current_generation: int
    previous_rotated_at: float | None
    detected_at: float


class RefreshReuseRevoked(RefreshReuseDetected):
    """Reuse detected *and* this call revoked the session: emit ``event`` exactly once.

    A subclass so callers catching ``errors.RefreshReuseDetected`` keep working.
    """

    def __init__(self, event: ReuseEvent) -> None:
        super().__init__(event.classification)
        self.event = event


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation write: the condition and the new state, stated once for every backend."""

    session_id: str
    presented_jti: str = field(repr=False)
    presented_generation: int
    new_jti: str = field(repr=False)
    now: float
    idle_expires_at: int

    @property
    def new_generation(self) -> int:
        return self.presented_generation + 1

    def allowed_on(self, session: Session) -> bool:
        """The presented token is current, the session active and not expired (idle or
        absolute). The DynamoDB backend states exactly this as its ConditionExpression."""
        return (
            session.holds_current(self.presented_jti, self.presented_generation)
            and session.status == STATUS_ACTIVE
            and session.idle_expires_at > self.now
            and session.absolute_expires_at > self.now
        )

    def apply_to(self, session: Session) -> Session:
        return replace(
            session,
            current_jti=self.new_jti,
            generation=self.new_generation,
            previous_jti=self.presented_jti,
            previous_generation=self.presented_generation,
            previous_rotated_at=self.now,
            last_activity=self.now,
            idle_expires_at=self.idle_expires_at,
        )


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation write. Only an active session is revoked, so a revocation never
    resurrects anything and never overwrites an earlier reason."""

    session_id: str
    reason: str
    now: float
    user_id: str | None = None  # when set, only that user's session may be revoked

    def allowed_on(self, session: Session) -> bool:
        return session.status == STATUS_ACTIVE and (
            self.user_id is None or session.user_id == self.user_id
        )

    def apply_to(self, session: Session) -> Session:
        return replace(
            session, status=STATUS_REVOKED, revoked_reason=self.reason, revoked_at=self.now
        )


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """A conditional write's result. ``session`` is the state after the write when ``applied``,
    otherwise the state the condition was checked against (None: no such item)."""

    applied: bool
    session: Session | None


def creation_order(session: Session) -> tuple[float, str]:
    """One total order of a user's sessions that every login agrees on: the exact creation time
    (not the index's whole second, within which a new login would rank below older sessions at
    random and evict itself), then the id for exact ties."""
    return session.created_at, session.session_id


def index_sort_key(session: Session) -> str:
    """The ``by_user`` sort key: a user's sessions oldest first (see store/table.py)."""
    return f"{SESSION_PREFIX}{math.floor(session.created_at):012d}#{session.session_id}"


# The id rules are the wire's (one set of bounds for the authorizer, the edge and the stores).
is_valid_session_id = wire.is_valid_session_id
_valid_id = wire.is_valid_session_id  # session ids and refresh-token ids (jti)


def _require_id(name: str, value: str) -> None:
    if not _valid_id(value):
        raise ValueError(f"{name} must be 1-128 URL-safe characters")


def _require_user_id(value: str) -> None:
    if not wire.is_valid_user_id(value):
        raise ValueError("user_id must be 1-128 characters of [A-Za-z0-9_.:-]")


def _device_id(value: str | None) -> str | None:
    """X-Device-Id as a session stores it (``wire.is_valid_device_id``): refused, not
    truncated, so two devices never collapse into one id."""
    if value is None or value == "":
        return None
    if not wire.is_valid_device_id(value):
        raise InvalidRequest(
            f"device_id must be 1 to {DEVICE_ID_MAX_CHARS} printable ASCII characters"
        )
    return value


def _bounded(name: str, value: str | None, limit: int) -> str | None:
    """Client metadata (the source address): refused, not truncated."""
    if value is None or value == "":
        return None
    if len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{name} must be at most {limit} printable characters")
    return value


class SessionStore(ABC):
    """Create, rotate, revoke and read sessions. Every failure of the store itself raises
    ``errors.StoreUnavailable`` and changes nothing the caller relies on: it is never reuse."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock

    # --- Backend I/O ---------------------------------------------------------------------------

    @abstractmethod
    def _insert(self, session: Session) -> WriteOutcome:
        """Write a new session unless that id exists (then return the existing item)."""

    @abstractmethod
    def _read(self, session_id: str) -> Session | None:
        """One strongly consistent read."""

    @abstractmethod
    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        """Apply ``rotation`` atomically iff ``rotation.allowed_on`` holds."""

    @abstractmethod
    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        """Apply ``revocation`` atomically iff ``revocation.allowed_on`` holds."""

    @abstractmethod
    def _iter_user_sessions(self, user_id: str) -> Iterator[Session]:
        """The user's sessions, oldest first: every active one (expired or not); revoked ones
        may still appear while an eventually consistent index catches up."""

    # --- The algorithm -------------------------------------------------------------------------

    def create_session(
        self,
        user_id: str,
        *,
        device_id: str | None = None,
        source_ip: str | None = None,
        user_agent: str | None = None,
        security_level: int = 1,
    ) -> Session:
        """Start a session at login; its first refresh token is ``current_jti``/``generation``.

        ``new_session``, ``insert_new`` and ``enforce_cap`` in one call. (The login flow calls
        them apart: the signing keys are loaded between the first two.)
        """
        session = self.new_session(
            user_id,
            device_id=device_id,
            source_ip=source_ip,
            user_agent=user_agent,
            security_level=security_level,
        )
        self.insert_new(session)
        self.enforce_cap(session)
        return session

    def new_session(
        self,
        user_id: str,
        *,
        device_id: str | None = None,
        source_ip: str | None = None,
        user_agent: str | None = None,
        security_level: int = 1,
    ) -> Session:
        """A new session as of now, validated, not yet stored."""
        _require_user_id(user_id)
        if security_level < 0:
            raise ValueError("security_level must not be negative")
        if user_agent is not None:
            user_agent = "".join(ch for ch in user_agent if ch.isprintable())[:USER_AGENT_MAX_CHARS]
        now = self.clock.now()
        return Session(
            session_id=new_session_id(),
            user_id=user_id,
            created_at=now,
            last_activity=now,
            idle_expires_at=_deadline(now, self.settings.refresh_token_ttl_seconds),
            absolute_expires_at=_deadline(now, self.settings.session_max_age_seconds),
            current_jti=new_jti(),
            generation=FIRST_GENERATION,
            device_id=_device_id(device_id),
            source_ip=_bounded("source_ip", source_ip, SOURCE_IP_MAX_CHARS),
            user_agent=user_agent or None,
            security_level=security_level,
        )

    def insert_new(self, session: Session) -> None:
        """Store a session from ``new_session``. StoreConflict if its id is taken."""
        outcome = self._insert(session)
        # A retried write whose first attempt landed finds its own item: that is success.
        if not outcome.applied and outcome.session != session:
            raise StoreConflict("session id collision")

    def enforce_cap(self, created: Session) -> None:
        """Revoke, as "evicted", the user's active sessions beyond the newest
        ``max_sessions_per_user``.

        Each login keeps the newest ``max`` sessions it can see (its own included, ordered by
        ``creation_order``: the exact creation time, then the id) and evicts the rest. A session
        is therefore evicted only when ``max`` newer ones exist, so logins racing each other
        never evict one of the newest ``max``: the last of them to look sees every session and
        leaves exactly the newest ``max``. (Excluding one's own session from the count, as a
        login naturally would, lets two racing logins evict each other's sessions and end below
        the cap.) The ``by_user``
        index is eventually consistent on DynamoDB, so a session created a moment ago may be
        missed and the cap exceeded until the next login.

        The cap is housekeeping, not a security boundary: if enforcing it fails, the login
        still succeeds (failing it would strand a session nobody holds).
        """
        try:
            self._enforce_cap(created, created.created_at)
        except StoreUnavailable as exc:
            logger.warning("session cap not enforced this time", extra={"code": exc.code})

    def _enforce_cap(self, created: Session, now: float) -> None:
        visible = {
            s.session_id: s for s in self._iter_user_sessions(created.user_id) if s.is_active(now)
        }
        visible.setdefault(created.session_id, created)  # the index may not show it yet
        newest_last = sorted(visible.values(), key=creation_order)
        excess = len(newest_last) - self.settings.max_sessions_per_user
        for oldest in newest_last[: max(0, excess)]:
            outcome = self._write_revocation(Revocation(oldest.session_id, REASON_EVICTED, now))
            if outcome.applied:
                security_event(
                    "session_revoked",
                    level=logging.INFO,
                    reason=REASON_EVICTED,
                    session_id=oldest.session_id,
                    user_id=oldest.user_id,
                )

    def get_session(self, session_id: str, *, active_only: bool = True) -> Session:
        """One strongly consistent read (the authorizer's sensitive-path check).

        With ``active_only`` (the default, fail closed) a revoked or expired session raises
        SessionRevoked or SessionExpired; without it, it is returned for inspection.
        """
        session = self._read(session_id) if _valid_id(session_id) else None
        if session is None:
            raise SessionNotFound()
        if active_only:
            session.require_active(self.clock.now())
        return session

    def rotate(
        self,
        session_id: str,
        presented_jti: str,
        presented_generation: int,
        new_jti: str,
        now: float | None = None,
    ) -> RotationResult:
        """Exchange the presented refresh token for its successor, in ONE conditional write.

        Success when the presented token is current. Otherwise the state the condition failed
        on decides: the immediately previous token inside the grace window gets the successor
        already issued (no write, so the window never slides); any other token revokes the
        session for reuse and raises RefreshReuseRevoked. A store failure raises
        StoreUnavailable and revokes nothing: the presented token stays usable for a retry.
        """
        _require_id("presented_jti", presented_jti)
        _require_id("new_jti", new_jti)
        if presented_generation < FIRST_GENERATION:
            raise ValueError("presented_generation must be positive")
        if secrets.compare_digest(presented_jti, new_jti):
            raise ValueError("new_jti must differ from presented_jti")
        if not _valid_id(session_id):
            raise SessionNotFound()
        when = self.clock.now() if now is None else now
        rotation = Rotation(
            session_id=session_id,
            presented_jti=presented_jti,
            presented_generation=presented_generation,
            new_jti=new_jti,
            now=when,
            idle_expires_at=_deadline(when, self.settings.refresh_token_ttl_seconds),
        )
        outcome = self._write_rotation(rotation)
        if outcome.applied and outcome.session is not None:
            return RotationResult.of(outcome.session, grace_replay=False)
        return self._after_refused_rotation(rotation, outcome.session)

    def _after_refused_rotation(self, rotation: Rotation, found: Session | None) -> RotationResult:
        if found is None:
            raise SessionNotFound()
        # A revoked session answers SessionRevoked to every token: it is never revoked twice
        # and a reuse event is never emitted twice.
        found.require_active(rotation.now)
        presented = (rotation.presented_jti, rotation.presented_generation)
        if found.holds_current(*presented):
            # Unreachable with an atomic backend (the condition held on this very state);
            # should a backend's fallback read ever see it, let the caller retry.
            raise StoreConflict("rotation condition failed on a matching state")
        if found.holds_previous(*presented) and secrets.compare_digest(
            found.current_jti, rotation.new_jti
        ):
            # This very rotation's write landed and its answer was lost: botocore retried it,
            # and the retry's condition failed on the state the first attempt wrote. Only this
            # call knows new_jti (fresh randomness, not yet sent anywhere), so this is never a
            # replay: success, whatever the grace window.
            return RotationResult.of(found, grace_replay=False)
        if found.holds_previous(*presented):
            rotated_at = found.previous_rotated_at
            grace = self.settings.refresh_reuse_grace_seconds
            # Half-open window [rotated_at, rotated_at + grace): the boundary instant is outside,
            # like a JWT exp, and a grace of 0 disables replays entirely.
            if rotated_at is not None and rotation.now < rotated_at + grace:
                return RotationResult.of(found, grace_replay=True)
            classification: ReuseClassification = "recent_previous"
        else:
            classification = "stale_lineage"
        revoked = self._write_revocation(
            Revocation(rotation.session_id, REASON_REFRESH_REUSE, rotation.now)
        )
        if not revoked.applied:
            # Someone else revoked it first (another replay, a logout): that one reports.
            if revoked.session is None:
                raise SessionNotFound()
            revoked.session.require_active(rotation.now)
            raise StoreConflict("reuse revocation refused on an active session")
        raise RefreshReuseRevoked(
            ReuseEvent(
                session_id=found.session_id,
                user_id=found.user_id,
                device_id=found.device_id,
                source_ip=found.source_ip,
                classification=classification,
                presented_generation=rotation.presented_generation,
                current_generation=found.generation,
                previous_rotated_at=found.previous_rotated_at,
                detected_at=rotation.now,
            )
        )

    def revoke(
        self, session_id: str, reason: str = REASON_LOGOUT, *, user_id: str | None = None
    ) -> bool:
        """Revoke one session. True if this call revoked it, False if it already was (the
        first reason stays). With ``user_id``, another user's session is SessionNotFound, so
        a caller cannot probe for session ids."""
        _require_reason(reason)
        if not _valid_id(session_id):
            raise SessionNotFound()
        revocation = Revocation(session_id, reason, self.clock.now(), user_id)
        outcome = self._write_revocation(revocation)
        if outcome.applied:
            return True
        found = outcome.session
        if found is None or (user_id is not None and found.user_id != user_id):
            raise SessionNotFound()
        if found.status == STATUS_REVOKED:
            return False
        raise StoreConflict("revocation refused on an active session")

    def revoke_all(self, user_id: str, reason: str = REASON_REVOKE_ALL) -> int:
        """Revoke every active, unexpired session of a user; return how many this call revoked.

        Idempotent: after a StoreUnavailable part-way, calling again finishes the job. The
        index is eventually consistent: a session created within the last second may be missed.
        """
        _require_user_id(user_id)
        _require_reason(reason)
        now = self.clock.now()
        count = 0
        for session in self._iter_user_sessions(user_id):
            if session.is_active(now):
                outcome = self._write_revocation(Revocation(session.session_id, reason, now))
                count += outcome.applied
        return count

    def list_sessions(self, user_id: str) -> list[Session]:
        """The user's active, unexpired sessions, oldest first."""
        _require_user_id(user_id)
        now = self.clock.now()
        return [s for s in self._iter_user_sessions(user_id) if s.is_active(now)]


def _require_reason(reason: str) -> None:
    if not isinstance(reason, str) or REASON_PATTERN.fullmatch(reason) is None:
        raise ValueError("reason must be a short snake_case word")
