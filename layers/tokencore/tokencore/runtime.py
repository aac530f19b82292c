"""The composition root: what one Lambda container (or the local stack) builds once and reuses.

Every store, reader, signer, key ring and service is chosen here and nowhere else; the layers
below receive what they need as constructor arguments. A Runtime is built from Settings, a
clock and ``Parts``: what a caller (a test, the local stack) supplies instead of what Settings
would build. Everything else is built lazily, on first use: a handler that only verifies
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
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings, get_settings
from tokencore.jose.algorithms import Signer
from tokencore.keys.keyring import JwksDocumentSource, KeyRing
from tokencore.keys.model import KeySource, VerificationKey
from tokencore.policy import Policy

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from tokencore.authz import Authorizer
    from tokencore.keys.secretsmanager import SecretsManagerKeySource
    from tokencore.ops.kmsrotation import KmsRotation
    from tokencore.ops.rotation import SecretsManagerRotation
    from tokencore.ratelimit import RateLimiter
    from tokencore.revocations import RevocationList
    from tokencore.service import AuthService
    from tokencore.sessioncheck import SessionReader
    from tokencore.sessions import SessionStore
    from tokencore.sessionservice import SessionService
    from tokencore.tokens.verify import KeyLookup
    from tokencore.users import UserService, UserStore


# How stale GET /.well-known/jwks.json may be (never more than JWKS_CACHE_TTL_SECONDS).
JWKS_ENDPOINT_CACHE_SECONDS = 5
# Verifiers' key rings refetch in the background during the last fifth of their TTL, so a busy
# container never waits for its keys (tokencore.keys.keyring, rule 4); the TTL bound stays.
KEY_REFRESH_AHEAD_FRACTION = 0.2


class Parts:
    """What a Runtime is given instead of building it; None (the default) means: build it from
    Settings on first use. A deployed container passes none.

    ``dynamodb_client``: one client for the three stores (a test shares one across runtimes);
    ``password_hasher``: the Argon2 parameters (tests use cheap ones; default OWASP's);
    ``public_key_source``: where verifiers fetch public keys (default: the JWKS in SSM);
    ``access_keys``: what access tokens verify against (default: a KeyRing on that source),
    which starts with ``initial_access_keys`` when given (as PUBLIC_JWKS would: no fetch).

    (A plain class, not a dataclass: it is defined on the authorizer's cold start, where
    building a dataclass costs about a millisecond.)
    """

    __slots__ = (
        "access_keys",
        "access_signer",
        "dynamodb_client",
        "initial_access_keys",
        "key_rotation",
        "password_hasher",
        "policy",
        "public_key_source",
        "rate_limiter",
        "refresh_keys",
        "refresh_signer",
        "session_reader",
        "sessions",
        "user_store",
    )

    def __init__(
        self,
        *,
        dynamodb_client: Any = None,
        sessions: SessionStore | None = None,
        user_store: UserStore | None = None,
        password_hasher: PasswordHasher | None = None,
        rate_limiter: RateLimiter | None = None,
        session_reader: SessionReader | None = None,
        public_key_source: KeySource | None = None,
        access_keys: KeyLookup | None = None,
        initial_access_keys: Sequence[VerificationKey] | None = None,
        refresh_keys: KeyLookup | None = None,
        access_signer: Signer | None = None,
        refresh_signer: Signer | None = None,
        policy: Policy | None = None,
        key_rotation: SecretsManagerRotation | None = None,
    ) -> None:
        self.dynamodb_client = dynamodb_client
        self.sessions = sessions
        self.user_store = user_store
        self.password_hasher = password_hasher
        self.rate_limiter = rate_limiter
        self.session_reader = session_reader
        self.public_key_source = public_key_source
        self.access_keys = access_keys
        self.initial_access_keys = initial_access_keys
        self.refresh_keys = refresh_keys
        self.access_signer = access_signer
        self.refresh_signer = refresh_signer
        self.policy = policy
        self.key_rotation = key_rotation

    def replace(self, **changes: Any) -> Parts:
        """These parts with ``changes`` (for a fresh container of the same stack)."""
        given = {name: getattr(self, name) for name in self.__slots__}
        return Parts(**{**given, **changes})


NO_PARTS = Parts()


class Runtime:
    """One per container. Attributes are cached properties: built on first use, then reused.
    ``parts`` supplies any of them instead (see ``Parts``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        parts: Parts = NO_PARTS,
    ) -> None:
        self.settings = settings or get_settings()
        self.clock = clock
        self.parts = parts

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
        if self.parts.access_signer is not None:
            return self.parts.access_signer
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
        if self.parts.public_key_source is not None:
            return self.parts.public_key_source
        from tokencore.keys.ssmhttp import public_jwks_source

        # Without boto3 wherever the environment holds credentials (every Lambda function).
        return public_jwks_source(self.settings.public_jwks_parameter)

    @cached_property
    def access_keys(self) -> KeyLookup:
        """What access tokens verify against: a KeyRing that starts from PUBLIC_JWKS (or the
        initial keys given), so a cold start with a known kid makes no network call."""
        if self.parts.access_keys is not None:
            return self.parts.access_keys
        settings = self.settings
        initial: Sequence[VerificationKey] | None = self.parts.initial_access_keys
        if initial is None and settings.public_jwks:
            initial = JwksDocumentSource(settings.public_jwks).load_verification_keys()
        return KeyRing(
            self.public_key_source,
            self.clock,
            cache_ttl_seconds=settings.jwks_cache_ttl_seconds,
            refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
            initial=initial,
            refresh_ahead_seconds=settings.jwks_cache_ttl_seconds * KEY_REFRESH_AHEAD_FRACTION,
        )

    @cached_property
    def jwks_endpoint_keys(self) -> KeyRing:
        """What GET /.well-known/jwks.json serves: the published JWKS, at most
        JWKS_ENDPOINT_CACHE_SECONDS old, so a revoked key leaves the endpoint within seconds
        (one GetParameter per container per interval, however hard the endpoint is hit)."""
        settings = self.settings
        ttl = min(JWKS_ENDPOINT_CACHE_SECONDS, settings.jwks_cache_ttl_seconds)
        return KeyRing(
            self.public_key_source,
            self.clock,
            cache_ttl_seconds=ttl,
            refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
            refresh_ahead_seconds=ttl * KEY_REFRESH_AHEAD_FRACTION,
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
        if self.parts.refresh_signer is not None:
            return self.parts.refresh_signer
        from tokencore.keys.secretsmanager import KeySetSigner

        return KeySetSigner(self._refresh_key_set_source)

    @cached_property
    def refresh_keys(self) -> KeyLookup:
        """Refresh tokens verify against the whole refresh key set, so tokens signed by the
        previous key keep working after a rotation until they are themselves rotated."""
        if self.parts.refresh_keys is not None:
            return self.parts.refresh_keys
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
        if self.parts.dynamodb_client is not None:
            return self.parts.dynamodb_client
        from tokencore.awsclient import LazyClient

        return LazyClient("dynamodb").get()

    @cached_property
    def sessions(self) -> SessionStore:
        if self.parts.sessions is not None:
            return self.parts.sessions
        from tokencore.sessions import DynamoDBSessionStore

        return DynamoDBSessionStore(
            self.settings.sessions_table_name,
            self.settings,
            self.clock,
            boto3_client=self.dynamodb_client,
        )

    @cached_property
    def user_store(self) -> UserStore:
        if self.parts.user_store is not None:
            return self.parts.user_store
        from tokencore.revocations import window_seconds
        from tokencore.users import DynamoDBUserStore

        settings = self.settings
        return DynamoDBUserStore(
            settings.sessions_table_name,
            self.clock,
            boto3_client=self.dynamodb_client,
            revocation_window_seconds=window_seconds(
                settings.access_token_ttl_seconds, settings.clock_skew_leeway_seconds
            ),
        )

    @cached_property
    def users(self) -> UserService:
        from tokencore.users import RevokeAllSessions, UserService

        return UserService(
            self.user_store,
            RevokeAllSessions(self.sessions),
            self.clock,
            hasher=self.parts.password_hasher,
            min_password_length=self.settings.password_min_length,
        )

    @cached_property
    def session_reader(self) -> SessionReader:
        """The session check's read: the session and its user, in one call on DynamoDB."""
        if self.parts.session_reader is not None:
            return self.parts.session_reader
        from tokencore.sessioncheck import session_reader_for

        return session_reader_for(self.sessions, self.user_store)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        if self.parts.rate_limiter is not None:
            return self.parts.rate_limiter
        from tokencore.ratelimit import DynamoDBRateLimiter

        return DynamoDBRateLimiter(
            self.settings.sessions_table_name, self.clock, boto3_client=self.dynamodb_client
        )

    # --- services ---------------------------------------------------------------------------

    @cached_property
    def policy(self) -> Policy:
        return self.parts.policy if self.parts.policy is not None else Policy(self.settings)

    @cached_property
    def authorizer(self) -> Authorizer:
        """The authorizer's checks. It reads the session store only through a provider, so the
        fast path never builds a store (nor imports boto3)."""
        from tokencore.authz import Authorizer
        from tokencore.claimscache import DEFAULT_MAX_AGE_SECONDS, ClaimsCache
        from tokencore.tokens import VerifyOptions

        settings = self.settings
        return Authorizer(
            keys=self.access_keys,
            options=VerifyOptions.for_access(settings),
            policy=self.policy,
            sessions=lambda: self.session_reader,
            clock=self.clock,
            # Never trusted longer than the key ring trusts its keys without a refetch.
            claims_cache=ClaimsCache(
                max_age_seconds=min(DEFAULT_MAX_AGE_SECONDS, settings.jwks_cache_ttl_seconds)
            ),
            revocations=self.revocation_list,
        )

    @cached_property
    def revocation_list(self) -> RevocationList | None:
        """The authorizer's copy of the revocation list, fetched without boto3 (awshttp); a
        test's DynamoDB client when given. None with a session store that keeps no list."""
        if self.parts.sessions is not None:
            return None
        from tokencore import revocations

        settings = self.settings
        table = settings.sessions_table_name
        if self.parts.dynamodb_client is not None:
            client = self.parts.dynamodb_client

            def fetch(keys: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
                answer = client.batch_get_item(
                    RequestItems={table: {"Keys": keys, "ConsistentRead": True}}
                )
                if answer.get("UnprocessedKeys"):
                    raise RuntimeError("unprocessed keys")
                return list(answer.get("Responses", {}).get(table, []))

            fetcher: revocations.ItemFetcher = fetch
        else:
            from tokencore.awshttp import AwsJsonClient

            http = AwsJsonClient("dynamodb", "DynamoDB_20120810", json_version="1.0")
            fetcher = revocations.dynamodb_fetcher(table, http)
        return revocations.RevocationList(
            fetcher,
            self.clock,
            propagation_seconds=settings.revocation_propagation_seconds,
            window=revocations.window_seconds(
                settings.access_token_ttl_seconds, settings.clock_skew_leeway_seconds
            ),
        )

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

    @cached_property
    def session_service(self) -> SessionService:
        from tokencore.sessionservice import SessionService

        return SessionService(self.sessions, self.users)

    # --- operations (tokenctl) ----------------------------------------------------------------

    @cached_property
    def key_rotation(self) -> SecretsManagerRotation:
        """The Secrets Manager key sets' rotation (both purposes): what the rotation function
        runs on schedule and tokenctl runs now."""
        if self.parts.key_rotation is not None:
            return self.parts.key_rotation
        from tokencore.awsclient import LazyClient
        from tokencore.ops.rotation import SecretsManagerRotation

        return SecretsManagerRotation(
            self.settings,
            secretsmanager=LazyClient("secretsmanager").get(),
            ssm=LazyClient("ssm").get(),
            clock=self.clock,
        )

    @cached_property
    def kms_rotation(self) -> KmsRotation:
        """KMS mode's access-key rotation: a new KMS key, published, then the alias moved."""
        from tokencore.awsclient import LazyClient
        from tokencore.ops.kmsrotation import KmsRotation

        return KmsRotation.from_settings(
            self.settings,
            kms=LazyClient("kms").get(),
            ssm=LazyClient("ssm").get(),
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


def current_settings() -> Settings:
    """The container's Settings: what a function hands its HTTP edge."""
    return get_runtime().settings


def set_runtime(runtime: Runtime | None) -> None:
    """Install a Runtime (tests, the local stack) or forget it (None)."""
    global _runtime
    with _lock:
        _runtime = runtime
