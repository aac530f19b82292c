"""Wiring: what one Lambda container (or the local stack) builds once and reuses.

Everything is built lazily, on first use, from one Settings: a handler that only verifies
access tokens (the authorizer's fast path) never builds a store, never creates a boto3 client
and never imports boto3. Signing keys are loaded once per container (the key sources cache the
parsed key set); verification keys live in a KeyRing that starts from PUBLIC_JWKS when it is set
(no network call at cold start) and refetches from the public key source on an unknown kid.

Least privilege shapes the sources: verifiers read only public keys (the SSM parameter that
holds the public JWKS in Secrets Manager mode, ``kms:GetPublicKey`` in KMS mode); only the
issuer and refresher read the private key set or call ``kms:Sign``.
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
    from tokencore.sessions import SessionStore
    from tokencore.users import UserService


class Runtime:
    """One per container. Attributes are cached properties: built on first use, then reused."""

    def __init__(self, settings: Settings | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings or get_settings()
        self.clock = clock

    # --- keys -------------------------------------------------------------------------------

    @cached_property
    def _access_key_set_source(self) -> SecretsManagerKeySource:
        from tokencore.keys.secretsmanager import SecretsManagerKeySource

        return SecretsManagerKeySource(self.settings.signing_keys_secret_id, "access")

    @cached_property
    def access_signer(self) -> Signer:
        """The key that signs access tokens (issuer and refresher only)."""
        settings = self.settings
        if settings.key_backend == "kms":
            from tokencore.keys.kms import KmsSigner

            return KmsSigner(settings.kms_signing_key_id, settings.access_token_alg)
        return self._access_key_set_source.signer()

    @cached_property
    def public_key_source(self) -> KeySource:
        """Where verifiers fetch public access-token keys (never the private key set)."""
        settings = self.settings
        if settings.key_backend == "kms":
            from tokencore.keys.kms import KmsKeySource

            return KmsKeySource(settings.kms_signing_key_id, settings.kms_verify_key_ids)
        from tokencore.keys.ssm import SsmJwksSource

        return SsmJwksSource(settings.public_jwks_parameter)

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
    def _refresh_key_set_source(self) -> SecretsManagerKeySource:
        from tokencore.keys.secretsmanager import SecretsManagerKeySource

        return SecretsManagerKeySource(self.settings.refresh_keys_secret_id, "refresh")

    @cached_property
    def refresh_signer(self) -> Signer:
        return self._refresh_key_set_source.signer()

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
            access_signer=self.access_signer,
            refresh_signer=self.refresh_signer,
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
