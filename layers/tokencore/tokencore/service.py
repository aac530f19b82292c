"""The flows: login, refresh, logout. Keys, tokens, users, sessions and rate limits meet here.

Ordering rules that keep these flows fail-closed:

* Login: the attempt first takes a slot in its rate-limit windows (per source address and per
  username) in ONE conditional write whose condition is the limit, so N parallel attempts
  against a window of L check at most L passwords, and an attempt that gets no slot is refused
  before anything else: a right and a wrong password then get the same 429 in the same time.
  Then the user is read by name, the password checked (one Argon2 verify, whoever asks), the
  signing keys loaded (once per container), the session written, the session cap applied, and
  the tokens minted. A token is minted only after its session record is written; if minting
  fails the fresh session is revoked (best effort), so no usable token exists without a
  session and no orphan lingers. AWS calls: 4 (a wrong password 2, no slot 1).
* Refresh: the refresh token is verified without touching the store (signature, type, expiry),
  then the per-user rate limit, then the user is re-read (disabled users and role changes take
  effect here), then the signing keys are loaded (a key outage fails before anything changed),
  then the ONE conditional rotation write. If minting fails after the rotation (KMS), the
  client retries with the same refresh token, which is then the previous one inside the grace
  window and gets the very same successor.
* Logout: revokes the session named by a valid refresh or access token. It is idempotent, and
  an invalid or expired token revokes nothing and answers the same (no oracle).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tokencore.audit import security_event
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings
from tokencore.errors import (
    InvalidRequest,
    KeyUnavailable,
    ServiceFault,
    SessionNotFound,
    SessionRevoked,
    StoreUnavailable,
    TokenRejected,
)
from tokencore.grant import TokenGrant
from tokencore.jose.algorithms import Signer, pinned
from tokencore.policy import HIGH_SECURITY_LEVEL
from tokencore.ratelimit import SCOPE_LOGIN_IP, SCOPE_LOGIN_USER, SCOPE_REFRESH_USER, RateLimiter
from tokencore.ratelimit.base import RateWindow
from tokencore.sessioncheck import ended_by
from tokencore.sessions.base import (
    REASON_LOGOUT,
    RefreshReuseRevoked,
    Session,
    SessionStore,
)
from tokencore.tokens import (
    AccessClaims,
    KeyLookup,
    RefreshClaims,
    VerifyOptions,
    fingerprint_hash,
    fingerprint_matches,
    mint_access_token,
    mint_refresh_token,
    new_fingerprint,
    new_token_id,
    verify_access_token,
    verify_refresh_token,
)
from tokencore.users import (
    User,
    UserService,
    normalize_username,
    username_rate_key,
)
from tokencore.users.passwords import validate_password

logger = logging.getLogger(__name__)

REASON_ISSUE_FAILED = "issue_failed"
# A fingerprint we generated: token_urlsafe(32) is 43 characters of the url-safe alphabet.
_FINGERPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class LoginRequest:
    username: str
    password: str = field(repr=False)
    source_ip: str | None = None
    device_id: str | None = None
    user_agent: str | None = None


class AuthService:
    """The flows. The signers may be given as providers (called on first use), so a function
    that never signs (the revoker's logout) never loads a signing key, which its IAM policy
    would refuse anyway, and one that does loads each key set once per container."""

    def __init__(
        self,
        settings: Settings,
        *,
        users: UserService,
        sessions: SessionStore,
        rate_limiter: RateLimiter,
        access_signer: Signer | Callable[[], Signer],
        refresh_signer: Signer | Callable[[], Signer],
        access_keys: KeyLookup,
        refresh_keys: KeyLookup,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.users = users
        self.sessions = sessions
        self.rate_limiter = rate_limiter
        self._access_signer = access_signer
        self._refresh_signer = refresh_signer
        self._access_keys = access_keys
        self._refresh_keys = refresh_keys
        self._access_options = VerifyOptions.for_access(settings)
        self._refresh_options = VerifyOptions.for_refresh(settings)
        self.clock = clock

    # --- login ------------------------------------------------------------------------------

    def login(self, request: LoginRequest) -> TokenGrant:
        # A malformed password is refused before it costs a slot: its answer does not depend
        # on the account, so it tells nothing.
        validate_password(request.password)
        self.rate_limiter.admit(self._login_windows(request))
        normalized = _normalized_or_none(request.username)
        found = self.users.store.find_normalized(normalized) if normalized is not None else None
        user = self.users.check_password(found, request.password)
        signers = self._signers()  # before the session is written: a key outage leaves none
        session = self.sessions.new_session(
            user.user_id,
            device_id=request.device_id,
            source_ip=request.source_ip,
            user_agent=request.user_agent,
        )
        try:
            self.sessions.insert_new(session)
        except StoreUnavailable:
            # The write may have landed with every answer lost: end it, so a session nobody
            # holds never counts against the user's cap (load run: 33 of them in 1,000 requests).
            self._discard(session)
            raise
        self.sessions.enforce_cap(session)
        try:
            return self._grant(
                user,
                session,
                refresh_jti=session.current_jti,
                generation=session.generation,
                issued_at=session.created_at,
                refresh_expires_at=session.refresh_expires_at,
                presented_fingerprint=None,
                signers=signers,
            )
        except ServiceFault:
            self._discard(session)
            raise

    def _login_windows(self, request: LoginRequest) -> list[RateWindow]:
        """The attempt's windows: its source address first, then its username."""
        settings = self.settings
        windows = []
        if request.source_ip:
            windows.append(
                self.rate_limiter.window(
                    SCOPE_LOGIN_IP, request.source_ip, settings.login_ip_rate_limit
                )
            )
        windows.append(
            self.rate_limiter.window(
                SCOPE_LOGIN_USER, _rate_key_for(request.username), settings.login_rate_limit
            )
        )
        return windows

    def _discard(self, session: Session) -> None:
        """Revoke a session whose tokens could not be minted, so nothing half-issued lingers."""
        try:
            if self.sessions.revoke(session.session_id, REASON_ISSUE_FAILED):
                _revoked(
                    REASON_ISSUE_FAILED, session_id=session.session_id, user_id=session.user_id
                )
        except SessionNotFound:
            pass  # its write never landed: nothing lingers
        except ServiceFault as exc:
            # The session's refresh token never left this process, so it cannot be used; the
            # record expires on its own. Say so and carry on with the original error.
            logger.warning(
                "could not revoke a session left without tokens", extra={"code": exc.code}
            )

    # --- refresh ----------------------------------------------------------------------------

    def refresh(self, refresh_token: object, *, fingerprint: str | None = None) -> TokenGrant:
        now = self.clock.now()
        claims = verify_refresh_token(refresh_token, self._refresh_keys, self._refresh_options, now)
        self.rate_limiter.hit(SCOPE_REFRESH_USER, claims.subject, self.settings.refresh_rate_limit)
        user = self.users.get_user(claims.subject)
        # Both signing keys are loaded before the rotation write: a key set that cannot be read
        # (a cold container during an outage) then fails the refresh before anything changed,
        # and the client's retry presents a token that is still current, not a reuse.
        signers = self._signers()
        try:
            result = self.sessions.rotate(
                claims.session_id, claims.token_id, claims.generation, new_token_id(), now
            )
        except RefreshReuseRevoked as reuse:
            # Reported once: only the call that revoked the session raises this.
            event = reuse.event
            security_event(
                "refresh_reuse",
                classification=event.classification,
                session_id=event.session_id,
                user_id=event.user_id,
                presented_generation=event.presented_generation,
                current_generation=event.current_generation,
            )
            raise
        session = result.session
        if session.user_id != user.user_id:
            # A refresh token whose subject is not the session's owner was minted by nobody
            # honest; treat it as forged.
            raise TokenRejected("refresh token does not belong to the session's user")
        ended_by_reason = ended_by(user, session)
        if ended_by_reason is not None:
            # revoke_all reads an eventually consistent index and may have missed a session
            # created moments before a password change or a "revoke all"; this closes the gap.
            if self.sessions.revoke(session.session_id, ended_by_reason):
                _revoked(ended_by_reason, session_id=session.session_id, user_id=user.user_id)
            raise SessionRevoked("session predates a revocation of all the user's sessions")
        rotated_at = session.previous_rotated_at if session.previous_rotated_at else now
        return self._grant(
            user,
            session,
            refresh_jti=result.jti,
            generation=result.generation,
            issued_at=rotated_at,
            refresh_expires_at=result.refresh_expires_at,
            presented_fingerprint=fingerprint,
            signers=signers,
            grace_replay=result.grace_replay,
        )

    # --- logout -----------------------------------------------------------------------------

    def logout(
        self,
        *,
        refresh_token: object = None,
        access_token: object = None,
        fingerprint: str | None = None,
    ) -> bool:
        """Revoke the session named by either token. True if a session was revoked now.

        Only a token that verifies names a session: a forged or expired one revokes nothing and
        the caller answers the same either way. An expired refresh token means the session has
        idled out already; the client normally sends its refresh cookie along with any bearer.
        An access token bound to a fingerprint names its session only with the matching
        fingerprint cookie, as at the authorizer: a copied bearer token alone cannot log its
        owner out.
        """
        named = self._session_named_by(refresh_token, access_token, fingerprint)
        if named is None:
            return False
        session_id, user_id = named
        try:
            revoked = self.sessions.revoke(session_id, REASON_LOGOUT, user_id=user_id)
        except SessionNotFound:
            return False
        if revoked:
            _revoked(REASON_LOGOUT, session_id=session_id, user_id=user_id)
        return revoked

    def _session_named_by(
        self, refresh_token: object, access_token: object, fingerprint: str | None
    ) -> tuple[str, str] | None:
        now = self.clock.now()
        if refresh_token:
            try:
                refresh = verify_refresh_token(
                    refresh_token, self._refresh_keys, self._refresh_options, now
                )
            except TokenRejected:
                pass  # fall through to the access token, if any
            else:
                return refresh.session_id, refresh.subject
        if access_token:
            try:
                access = verify_access_token(
                    access_token, self._access_keys, self._access_options, now
                )
            except TokenRejected:
                return None
            bound = access.fingerprint_hash
            if bound is not None and not fingerprint_matches(bound, fingerprint):
                return None
            return access.session_id, access.subject
        return None

    # --- verification for handlers -------------------------------------------------------------

    def verify_access(self, access_token: object) -> AccessClaims:
        return verify_access_token(
            access_token, self._access_keys, self._access_options, self.clock.now()
        )

    # --- minting ----------------------------------------------------------------------------

    def _signers(self) -> tuple[Signer, Signer]:
        """The access and refresh signers, each pinned to the key active now (reading a key set
        or a KMS public key here, at most once per cache TTL), for the tokens of one grant."""
        try:
            return pinned(_resolve(self._access_signer)), pinned(_resolve(self._refresh_signer))
        except ServiceFault:
            raise
        except Exception as exc:
            raise KeyUnavailable("could not load the signing keys") from exc

    def _grant(
        self,
        user: User,
        session: Session,
        *,
        refresh_jti: str,
        generation: int,
        issued_at: float,
        refresh_expires_at: int,
        presented_fingerprint: str | None,
        signers: tuple[Signer, Signer],
        grace_replay: bool = False,
    ) -> TokenGrant:
        settings = self.settings
        now = self.clock.now()
        fingerprint: str | None = None
        bound_hash: str | None = None
        if settings.fingerprint_binding:
            # Keep the browser's fingerprint across refreshes: tabs share one cookie jar, and a
            # new fingerprint per refresh would break the access tokens other tabs still hold.
            if presented_fingerprint and _FINGERPRINT.fullmatch(presented_fingerprint):
                fingerprint = presented_fingerprint
                bound_hash = fingerprint_hash(fingerprint)
            else:
                fingerprint, bound_hash = new_fingerprint()
        level = session.security_level
        access_signer, refresh_signer = signers
        access_issued_at = int(now)
        access_claims = AccessClaims(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            subject=user.user_id,
            session_id=session.session_id,
            token_id=new_token_id(),
            issued_at=access_issued_at,
            expires_at=access_issued_at + settings.access_token_ttl_seconds,
            roles=tuple(user.roles),
            email=user.email,
            fingerprint_hash=bound_hash,
            security_level=str(level) if level >= HIGH_SECURITY_LEVEL else None,
        )
        # Re-minted byte for byte inside the grace window: every value here is stored state.
        refresh_claims = RefreshClaims(
            issuer=settings.token_issuer,
            audience=settings.token_issuer,
            subject=user.user_id,
            session_id=session.session_id,
            token_id=refresh_jti,
            generation=generation,
            issued_at=int(issued_at),
            expires_at=int(refresh_expires_at),
        )
        try:
            access = mint_access_token(access_signer, access_claims)
            refresh = mint_refresh_token(refresh_signer, refresh_claims)
        except ServiceFault:
            raise
        except Exception as exc:
            # A signer failing in an unexpected way is our fault, never a token.
            raise KeyUnavailable("could not sign tokens") from exc
        return TokenGrant(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=settings.access_token_ttl_seconds,
            session_id=session.session_id,
            refresh_expires_at=refresh_expires_at,
            fingerprint=fingerprint,
            grace_replay=grace_replay,
        )


def _resolve(signer: Signer | Callable[[], Signer]) -> Signer:
    """A signer, or the provider of one (a Runtime's cached property: built once)."""
    if hasattr(signer, "sign"):
        return signer  # type: ignore[return-value]  # a Signer (a Protocol: no isinstance)
    return signer()


def _revoked(reason: str, *, session_id: str, user_id: str) -> None:
    """The security event of one revocation made here (ids hashed by ``security_event``)."""
    security_event(
        "session_revoked", level=logging.INFO, reason=reason, session_id=session_id, user_id=user_id
    )


def _normalized_or_none(username: str) -> str | None:
    """The name to look up, or None for one that could never have been registered."""
    try:
        return normalize_username(username)
    except (InvalidRequest, ValueError, TypeError):
        return None


def _rate_key_for(username: str) -> str:
    """The per-username rate-limit key; a name that cannot be normalized is limited as given,
    so malformed names cannot dodge the limit (and still fail authentication after it)."""
    try:
        return username_rate_key(username)
    except (InvalidRequest, ValueError, TypeError):
        return f"raw:{username[:256]}" if isinstance(username, str) else "raw:"


__all__ = ["AuthService", "LoginRequest", "TokenGrant"]
