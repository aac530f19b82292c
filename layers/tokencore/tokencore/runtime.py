"""Wiring: what one Lambda container (or the local stack) builds once and reuses.

Everything is built lazily, on first use, from one Settings: a handler that only verifies
access tokens (the authorizer's fast path) never builds a store, never creates a boto3 client
and never imports boto3. Verification keys live in a KeyRing that starts from PUBLIC_JWKS when it
is set (no network call at cold start), refetches on an unknown kid (rate limited) and forgets
its keys after JWKS_CACHE_TTL_SECONDS.

Every cache of key material follows the key sets within JWKS_CACHE_TTL_SECONDS, so a warm
container rides through a rotation and drops a revoked key within that bound: the KeyRings
expire; the signers (``KeySetSigner``) re-read their key set once it is that old, so a warm
issuer stops signing with a retired key at most that long after the rotation (the key
lifecycle keeps retired keys published for that long on top of the token lifetime); a KMS
signer signs through the alias and notices at once when a rotation moves it.

Least privilege shapes the sources: verifiers read only public keys, from the SSM parameter
that holds the public JWKS, in both key backends (KMS mode publishes the KMS public keys there
too), so no verifier calls KMS and a rotation needs no redeployment; only the issuer and
refresher read the private key set or call ``kms:Sign``.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings, get_settings
from tokencore.keys.keyring import JwksDocumentSource, KeyRing
from tokencore.keys.model import KeySource, Signer, VerificationKey
from tokencore.policy import Policy

if TYPE_CHECKING:
    from tokencore.keys.secretsmanager import SecretsManagerKeySource
    from tokencore.ratelimit import RateLimiter
    from tokencore.service import AuthService
    from tokencore.sessioncheck import SessionReader
    from tokencore.sessions import SessionStore
    from tokencore.users import UserService


# How stale GET /.well-known/jwks.json may be (never more than JWKS_CACHE_TTL_SECONDS).
JWKS_ENDPOINT_CACHE_SECONDS = 5


class Runtime:
    """One per container. Attributes are cached properties: built on first use, then reused."""

    def __init__(self, settings: Settings | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings or get_settings()
        self.clock = clock

    # --- keys -------------------------------------------------------------------------------

    @cached_property
    def _access_key_set_source(self) -> SecretsManagerKeySource:
        from tokencore.keys.secretsmanager import SecretsManagerKeySource

        return SecretsManagerKeySource(
            self.settings.signing_keys_secret_id,
            "access",
            clock=self.clock,
            max_age_seconds=self.settings.jwks_cache_ttl_seconds,
        )

    @cached_property
    def access_signer(self) -> Signer:
        """What signs access tokens (issuer and refresher only): the active key of the access
        set as of at most JWKS_CACHE_TTL_SECONDS ago, or the KMS key the alias names now."""
        settings = self.settings
        if settings.key_backend == "kms":
            from tokencore.keys.kms import KmsSigner

            return KmsSigner(settings.kms_signing_key_id, settings.access_token_alg)
        from tokencore.keys.secretsmanager import KeySetSigner

        return KeySetSigner(self._access_key_set_source)

    @cached_property
    def public_key_source(self) -> KeySource:
        """Where verifiers fetch public access-token keys: the published JWKS (SSM), in both
        key backends. Never the private key set, never KMS."""
        from tokencore.keys.ssm import SsmJwksSource

        return SsmJwksSource(self.settings.public_jwks_parameter)

    @cached_property
    def access_keys(self) -> KeyRing:
        settings = self.settings
        initial: list[VerificationKey] | None = None
        if settings.public_jwks:
            initial = JwksDocumentSource(settings.public_jwks).load_verification_keys()
        return KeyRing(
            self.public_key_source,
            self.clock,
            cache_ttl_seconds=settings.jwks_cache_ttl_seconds,
            refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
            initial=initial,
        )

    @cached_property
    def jwks_endpoint_keys(self) -> KeyRing:
        """What GET /.well-known/jwks.json serves: the published JWKS, at most
        JWKS_ENDPOINT_CACHE_SECONDS old, so a revoked key leaves the endpoint within seconds
        (one GetParameter per container per interval, however hard the endpoint is hit)."""
        settings = self.settings
        return KeyRing(
            self.public_key_source,
            self.clock,
            cache_ttl_seconds=min(JWKS_ENDPOINT_CACHE_SECONDS, settings.jwks_cache_ttl_seconds),
            refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
        )

    @cached_property
    def _refresh_key_set_source(self) -> SecretsManagerKeySource:
        from tokencore.keys.secretsmanager import SecretsManagerKeySource

        return SecretsManagerKeySource(
            self.settings.refresh_keys_secret_id,
            "refresh",
            clock=self.clock,
            max_age_seconds=self.settings.jwks_cache_ttl_seconds,
        )

    @cached_property
    def refresh_signer(self) -> Signer:
        from tokencore.keys.secretsmanager import KeySetSigner

        return KeySetSigner(self._refresh_key_set_source)

    @cached_property
    def refresh_keys(self) -> KeyRing:
        """Refresh tokens verify against the whole refresh key set, so tokens signed by the
        previous key keep working after a rotation until they are themselves rotated."""
        settings = self.settings
        return KeyRing(
            self._refresh_key_set_source,
            self.clock,
            cache_ttl_seconds=settings.jwks_cache_ttl_seconds,
            refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
        )

    # --- stores -----------------------------------------------------------------------------

    @cached_property
    def dynamodb_client(self) -> Any:
        """One DynamoDB client for the three stores (clients are thread-safe; creating one
        costs a few tens of milliseconds of a cold start)."""
        from tokencore.awsclient import LazyClient

        return LazyClient("dynamodb").get()

    @cached_property
    def sessions(self) -> SessionStore:
        from tokencore.sessions import DynamoDBSessionStore

        return DynamoDBSessionStore(
            self.settings.sessions_table_name,
            self.settings,
            self.clock,
            boto3_client=self.dynamodb_client,
        )

    @cached_property
    def users(self) -> UserService:
        from tokencore.users import DynamoDBUserStore, RevokeAllSessions, UserService

        store = DynamoDBUserStore(
            self.settings.sessions_table_name, self.clock, boto3_client=self.dynamodb_client
        )
        return UserService(store, RevokeAllSessions(self.sessions), self.clock)

    @cached_property
    def session_reader(self) -> SessionReader:
        """The session check's read: the session and its user, in one call on DynamoDB."""
        from tokencore.sessioncheck import session_reader_for

        return session_reader_for(self.sessions, self.users.store)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from tokencore.ratelimit import DynamoDBRateLimiter

        return DynamoDBRateLimiter(
            self.settings.sessions_table_name, self.clock, boto3_client=self.dynamodb_client
        )

    # --- services ---------------------------------------------------------------------------

    @cached_property
    def policy(self) -> Policy:
        return Policy(self.settings)

    @cached_property
    def auth(self) -> AuthService:
        from tokencore.service import AuthService

        return AuthService(
            self.settings,
            users=self.users,
            sessions=self.sessions,
            rate_limiter=self.rate_limiter,
            # Providers, not signers: a function that only verifies (logout) never reads a
            # signing key set, and its IAM policy does not allow it to.
            access_signer=lambda: self.access_signer,
            refresh_signer=lambda: self.refresh_signer,
            access_keys=self.access_keys,
            refresh_keys=self.refresh_keys,
            clock=self.clock,
        )


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The container's Runtime, built on first use (never at import: settings come first)."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = Runtime()
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a Runtime (tests, the local stack) or forget it (None)."""
    global _runtime
    with _lock:
        _runtime = runtime
