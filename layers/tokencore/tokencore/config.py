"""Settings: one frozen object built from the environment on first use, validated once.

Never read at import time, so a test (or `make dev`) can set the environment before the first
call, and a bad value fails with an error that names the variable (never echoing its value,
which may be a secret's identifier or worse).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tokencore.errors import ConfigError
from tokencore.jose.algorithms import ALGORITHMS, DEFAULT_ACCESS_ALGORITHM, AccessAlgorithm

KeyBackend = Literal["secretsmanager", "kms"]
RefreshTransport = Literal["cookie", "body", "both"]

# The choices of ACCESS_TOKEN_ALG: the registry's access algorithms (jose.algorithms).
ACCESS_ALGORITHMS: tuple[str, ...] = ALGORITHMS.for_purpose("access")
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"})

# GET /auth/sessions lists device ids, which the sensitive routes' device check compares: a
# revoked session must not read them (nor which sessions are still live).
DEFAULT_SENSITIVE_ROUTES = (
    "GET /auth/sessions,POST /auth/sessions/revoke-all,DELETE /auth/sessions/*,* /admin/*"
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` events per fixed window of ``window_seconds``."""

    count: int
    window_seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.window_seconds}"


@dataclass(frozen=True, slots=True)
class RoutePattern:
    """``METHOD /path`` where METHOD may be ``*`` and a path segment may be ``*`` (one segment)
    or the path may end in ``/*`` (that prefix and everything below it)."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Settings:
    # The contract's settings (../shared/api-contract.md), same names in upper case.
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 604_800
    session_max_age_seconds: int = 2_592_000
    clock_skew_leeway_seconds: int = 30
    # Long enough for a lost response or two tabs racing, short enough that a thief who
    # replays a stolen previous token gains nothing: Okta's default, and it never slides.
    refresh_reuse_grace_seconds: int = 30
    session_check_sample_rate: float = 0.1
    sensitive_routes: tuple[RoutePattern, ...] = field(
        default_factory=lambda: _Reader({}).routes("SENSITIVE_ROUTES", DEFAULT_SENSITIVE_ROUTES)
    )
    refresh_rate_limit: RateLimit = RateLimit(5, 60)
    # Per username: enough for a person mistyping, far too few for guessing; a short window
    # so an attacker cannot hold a victim locked out for long without the victim noticing
    # (every limited attempt is a security event).
    login_rate_limit: RateLimit = RateLimit(10, 300)
    # Per source IP: generous for offices behind one NAT, still a wall for credential stuffing.
    login_ip_rate_limit: RateLimit = RateLimit(100, 300)
    allowed_origins: tuple[str, ...] = ()
    refresh_token_transport: RefreshTransport = "cookie"

    # The project's own settings (documented in the README).
    token_issuer: str = "http://127.0.0.1:3000"
    token_audience: str = "tokencore-api"
    access_token_alg: AccessAlgorithm = DEFAULT_ACCESS_ALGORITHM
    key_backend: KeyBackend = "secretsmanager"
    signing_keys_secret_id: str = "tokencore/signing-keys"
    refresh_keys_secret_id: str = "tokencore/refresh-keys"
    kms_signing_key_id: str = ""
    kms_verify_key_ids: tuple[str, ...] = ()
    sessions_table_name: str = "tokencore-sessions"
    fingerprint_binding: bool = True
    max_sessions_per_user: int = 20
    jwks_cache_ttl_seconds: int = 300
    jwks_refetch_min_interval_seconds: int = 10
    public_jwks: str = ""
    public_jwks_parameter: str = "/tokencore/public-jwks"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build and validate Settings from ``env`` (default: ``os.environ``)."""
        source = os.environ if env is None else env
        reader = _Reader(source)
        settings = cls(
            access_token_ttl_seconds=reader.integer("ACCESS_TOKEN_TTL_SECONDS", 900, low=30),
            refresh_token_ttl_seconds=reader.integer("REFRESH_TOKEN_TTL_SECONDS", 604_800, low=60),
            session_max_age_seconds=reader.integer("SESSION_MAX_AGE_SECONDS", 2_592_000, low=60),
            clock_skew_leeway_seconds=reader.integer(
                "CLOCK_SKEW_LEEWAY_SECONDS", 30, low=0, high=300
            ),
            refresh_reuse_grace_seconds=reader.integer(
                "REFRESH_REUSE_GRACE_SECONDS", 30, low=0, high=300
            ),
            session_check_sample_rate=reader.fraction("SESSION_CHECK_SAMPLE_RATE", 0.1),
            sensitive_routes=reader.routes("SENSITIVE_ROUTES", DEFAULT_SENSITIVE_ROUTES),
            refresh_rate_limit=reader.rate_limit("REFRESH_RATE_LIMIT", RateLimit(5, 60)),
            login_rate_limit=reader.rate_limit("LOGIN_RATE_LIMIT", RateLimit(10, 300)),
            login_ip_rate_limit=reader.rate_limit("LOGIN_IP_RATE_LIMIT", RateLimit(100, 300)),
            allowed_origins=reader.origins("ALLOWED_ORIGINS"),
            refresh_token_transport=reader.choice(
                "REFRESH_TOKEN_TRANSPORT", "cookie", ("cookie", "body", "both")
            ),  # type: ignore[arg-type]
            token_issuer=reader.url("TOKEN_ISSUER", "http://127.0.0.1:3000"),
            token_audience=reader.text("TOKEN_AUDIENCE", "tokencore-api"),
            access_token_alg=reader.choice(  # type: ignore[arg-type]
                "ACCESS_TOKEN_ALG", DEFAULT_ACCESS_ALGORITHM, ACCESS_ALGORITHMS
            ),
            key_backend=reader.choice("KEY_BACKEND", "secretsmanager", ("secretsmanager", "kms")),  # type: ignore[arg-type]
            signing_keys_secret_id=reader.text("SIGNING_KEYS_SECRET_ID", "tokencore/signing-keys"),
            refresh_keys_secret_id=reader.text("REFRESH_KEYS_SECRET_ID", "tokencore/refresh-keys"),
            kms_signing_key_id=reader.text("KMS_SIGNING_KEY_ID", "", required=False),
            kms_verify_key_ids=reader.text_list("KMS_VERIFY_KEY_IDS"),
            sessions_table_name=reader.text("SESSIONS_TABLE_NAME", "tokencore-sessions"),
            fingerprint_binding=reader.boolean("FINGERPRINT_BINDING", True),
            max_sessions_per_user=reader.integer("MAX_SESSIONS_PER_USER", 20, low=1, high=1000),
            jwks_cache_ttl_seconds=reader.integer("JWKS_CACHE_TTL_SECONDS", 300, low=1),
            jwks_refetch_min_interval_seconds=reader.integer(
                "JWKS_REFETCH_MIN_INTERVAL_SECONDS", 10, low=0
            ),
            public_jwks=reader.text("PUBLIC_JWKS", "", required=False),
            public_jwks_parameter=reader.text("PUBLIC_JWKS_PARAMETER", "/tokencore/public-jwks"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field rules, checked once."""
        if self.session_max_age_seconds < self.refresh_token_ttl_seconds:
            # Allowed in principle, but then the idle lifetime is meaningless; say so loudly.
            raise ConfigError("SESSION_MAX_AGE_SECONDS must be at least REFRESH_TOKEN_TTL_SECONDS")
        if self.access_token_ttl_seconds > self.refresh_token_ttl_seconds:
            raise ConfigError("ACCESS_TOKEN_TTL_SECONDS must not exceed REFRESH_TOKEN_TTL_SECONDS")
        if self.key_backend == "kms" and not self.kms_signing_key_id:
            raise ConfigError("KMS_SIGNING_KEY_ID is required when KEY_BACKEND is kms")
        kms_signs = ALGORITHMS[self.access_token_alg].kms_signing_algorithm is not None
        if self.key_backend == "kms" and not kms_signs:
            raise ConfigError(
                f"ACCESS_TOKEN_ALG {self.access_token_alg} is not available with KEY_BACKEND kms"
            )

    @property
    def refresh_cookie_in_use(self) -> bool:
        return self.refresh_token_transport in ("cookie", "both")

    @property
    def refresh_body_in_use(self) -> bool:
        return self.refresh_token_transport in ("body", "both")


class _Reader:
    """Reads one variable at a time; every error names the variable and never its value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str, *, required: bool = True) -> str:
        value = self._raw(name)
        if value is None:
            if required and not default:
                raise ConfigError(f"{name} is required")
            return default
        if any(ord(ch) < 0x20 for ch in value):
            raise ConfigError(f"{name} contains control characters")
        return value

    def text_list(self, name: str) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return ()
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("https://", "http://")):
            raise ConfigError(f"{name} must be an http(s) URL")
        return value.rstrip("/")

    def integer(self, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a whole number") from exc
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {bound}")
        return number

    def fraction(self, name: str, default: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a number between 0 and 1") from exc
        if not 0.0 <= number <= 1.0:  # also rejects NaN
            raise ConfigError(f"{name} must be a number between 0 and 1")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value not in allowed:
            raise ConfigError(f"{name} must be one of: {', '.join(allowed)}")
        return value

    def rate_limit(self, name: str, default: RateLimit) -> RateLimit:
        value = self._raw(name)
        if value is None:
            return default
        count_text, sep, window_text = value.partition("/")
        try:
            if not sep:
                raise ValueError(name)
            limit = RateLimit(int(count_text, 10), int(window_text, 10))
        except ValueError as exc:
            raise ConfigError(f"{name} must look like COUNT/SECONDS, e.g. 5/60") from exc
        if limit.count < 1 or limit.window_seconds < 1:
            raise ConfigError(f"{name} needs a positive count and window")
        return limit

    def origins(self, name: str) -> tuple[str, ...]:
        origins = []
        for origin in self.text_list(name):
            if origin == "*":
                # A wildcard with credentials is refused by browsers and unsafe to reflect.
                raise ConfigError(f"{name} must list exact origins, not *")
            if not origin.startswith(("https://", "http://")) or origin.count("/") != 2:
                raise ConfigError(f"{name} entries must be scheme://host[:port] with no path")
            origins.append(origin.rstrip("/"))
        return tuple(origins)

    def routes(self, name: str, default: str) -> tuple[RoutePattern, ...]:
        value = self._raw(name)
        spec = default if value is None else value
        patterns = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            method, _, path = item.partition(" ")
            method, path = method.strip().upper(), path.strip()
            if method not in HTTP_METHODS or not path.startswith("/") or " " in path:
                raise ConfigError(f"{name} entries must look like 'METHOD /path' or '* /path/*'")
            patterns.append(RoutePattern(method, path))
        return tuple(patterns)


_lock = threading.Lock()
_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide Settings, built from the environment on first use."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_env()
    return _settings


def reset_settings() -> None:
    """Forget the cached Settings (tests and `make dev` after changing the environment)."""
    global _settings
    with _lock:
        _settings = None
