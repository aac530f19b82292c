"""The whole error tree of tokencore, each error with a short machine-readable code.

Two branches matter to callers:

* ``Rejected``: the caller's input is bad (a forged or expired token, a replayed refresh token,
  a wrong password). Handlers answer 4xx; the authorizer denies.
* ``ServiceFault``: our side failed (a store throttled, a key could not be loaded). Handlers
  answer 503 with Retry-After; the authorizer denies. A fault never revokes anything and is never
  mistaken for a rejection such as refresh reuse.

Codes are used verbatim in logs, metrics and deny reasons. Messages never contain token, key or
password material: they are safe to log.
"""

from __future__ import annotations


class TokenCoreError(Exception):
    """Base of every error tokencore raises on purpose."""

    code: str = "tokencore_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


# --- Rejections: the input is bad ------------------------------------------------------------


class Rejected(TokenCoreError):
    """The caller's input was refused."""

    code = "rejected"


class TokenRejected(Rejected):
    """A token failed verification. Clients see one generic answer for every subclass."""

    code = "invalid_token"


class MalformedToken(TokenRejected):
    code = "malformed_token"


class TokenTooLarge(MalformedToken):
    code = "token_too_large"


class UnsupportedHeader(TokenRejected):
    """A header we refuse to honour: jku, x5u, x5c, jwk, crit, b64, a wrong typ."""

    code = "unsupported_header"


class AlgorithmNotAllowed(TokenRejected):
    code = "alg_not_allowed"


class UnknownKey(TokenRejected):
    code = "unknown_kid"


class InvalidSignature(TokenRejected):
    code = "invalid_signature"


class ExpiredToken(TokenRejected):
    code = "expired_token"


class TokenNotYetValid(TokenRejected):
    """nbf or iat lies in the future beyond the leeway."""

    code = "token_not_yet_valid"


class MissingClaim(TokenRejected):
    code = "missing_claim"


class InvalidClaim(TokenRejected):
    code = "invalid_claim"


class WrongTokenType(TokenRejected):
    """A refresh token presented as an access token, or the reverse."""

    code = "wrong_token_type"


class FingerprintMismatch(TokenRejected):
    code = "fingerprint_mismatch"


class SessionRejected(Rejected):
    """The session behind a token is not usable."""

    code = "session_rejected"


class SessionNotFound(SessionRejected):
    code = "session_not_found"


class SessionUserMismatch(SessionRejected):
    """The token names a session that belongs to someone else."""

    code = "session_user_mismatch"


class SessionRevoked(SessionRejected):
    code = "session_revoked"


class SessionExpired(SessionRejected):
    code = "session_expired"


class RefreshReuseDetected(SessionRejected):
    """An old refresh token came back: the session has been revoked."""

    code = "refresh_reuse_detected"

    def __init__(self, classification: str, message: str | None = None) -> None:
        super().__init__(message or f"refresh token reuse ({classification})")
        # "recent_previous": the previous token after its grace window;
        # "stale_lineage": an older generation than the previous one.
        self.classification = classification


class DeviceMismatch(SessionRejected):
    code = "device_mismatch"


class InvalidCredentials(Rejected):
    """Unknown user and wrong password give this one error, after the same work."""

    code = "invalid_credentials"


class UserDisabled(Rejected):
    code = "user_disabled"


class UserExists(Rejected):
    code = "user_exists"


class UserNotFound(Rejected):
    code = "user_not_found"


class InvalidRequest(Rejected):
    code = "invalid_request"


class Forbidden(Rejected):
    code = "insufficient_scope"


class RateLimited(Rejected):
    code = "rate_limited"

    def __init__(
        self, retry_after_seconds: int, message: str | None = None, *, scope: str | None = None
    ) -> None:
        super().__init__(message or "rate limited")
        self.retry_after_seconds = max(1, int(retry_after_seconds))
        # Which limit (login_user, login_ip, refresh_user): for security events and metrics.
        self.scope = scope


# --- Faults: our side failed -----------------------------------------------------------------


class ServiceFault(TokenCoreError):
    """Something on our side failed. Retryable; never a reason to revoke or to allow."""

    code = "service_fault"
    retry_after_seconds = 1


class ConfigError(ServiceFault):
    """A setting is missing or invalid. The message names the variable, never its value."""

    code = "invalid_config"


class KeyUnavailable(ServiceFault):
    """Signing or verification keys could not be loaded or used."""

    code = "key_unavailable"


class InvalidKeyMaterial(KeyUnavailable):
    """A key document (JWK, JWKS, secret) is malformed or unsafe."""

    code = "invalid_key"


class SigningKeyChanged(KeyUnavailable):
    """The key behind a signer changed between choosing a token's kid and signing it (a KMS
    alias moved): the signature would not match the header, so minting starts over once."""

    code = "signing_key_changed"


class KeyRotationFailed(KeyUnavailable):
    """A key rotation or revocation step could not complete (a stale or conflicting pending
    version, a probe token that did not verify). Nothing the verifiers use was changed."""

    code = "key_rotation_failed"


class StoreUnavailable(ServiceFault):
    """The session, user or rate-limit store failed (throttling, timeout, access denied)."""

    code = "store_unavailable"


class StoreConflict(ServiceFault):
    """A conditional write lost a race that a retry can win (not reuse, not revocation)."""

    code = "store_conflict"
