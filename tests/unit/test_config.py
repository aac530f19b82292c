from __future__ import annotations

import pytest

from tokencore.config import RateLimit, RoutePattern, Settings, get_settings, reset_settings
from tokencore.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.access_token_ttl_seconds == 900
    assert settings.refresh_token_ttl_seconds == 604_800
    assert settings.session_max_age_seconds == 2_592_000
    assert settings.clock_skew_leeway_seconds == 30
    assert settings.session_check_sample_rate == 0.1
    assert settings.refresh_rate_limit == RateLimit(5, 60)
    assert settings.allowed_origins == ()
    assert settings.refresh_token_transport == "cookie"
    assert settings.access_token_alg == "RS256"
    assert settings.password_min_length == 8  # NIST SP 800-63B
    assert RoutePattern("*", "/admin/*") in settings.sensitive_routes
    assert Settings() == settings  # the dataclass defaults and the environment defaults agree


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "ACCESS_TOKEN_TTL_SECONDS": "300",
            "REFRESH_RATE_LIMIT": "3/10",
            "ALLOWED_ORIGINS": "https://app.example.com, http://localhost:5173",
            "SENSITIVE_ROUTES": "get /me, * /admin/*",
            "REFRESH_TOKEN_TRANSPORT": "both",
            "FINGERPRINT_BINDING": "off",
            "SESSION_CHECK_SAMPLE_RATE": "0",
            "PASSWORD_MIN_LENGTH": "12",
        }
    )
    assert settings.access_token_ttl_seconds == 300
    assert settings.refresh_rate_limit == RateLimit(3, 10)
    assert settings.allowed_origins == ("https://app.example.com", "http://localhost:5173")
    assert settings.sensitive_routes == (RoutePattern("GET", "/me"), RoutePattern("*", "/admin/*"))
    assert settings.refresh_body_in_use
    assert settings.refresh_cookie_in_use
    assert settings.fingerprint_binding is False
    assert settings.session_check_sample_rate == 0.0
    assert settings.password_min_length == 12


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_TTL_SECONDS", "ten"),
        ("ACCESS_TOKEN_TTL_SECONDS", "-5"),
        ("CLOCK_SKEW_LEEWAY_SECONDS", "3600"),
        ("SESSION_CHECK_SAMPLE_RATE", "1.5"),
        ("SESSION_CHECK_SAMPLE_RATE", "nan"),
        ("REFRESH_RATE_LIMIT", "5"),
        ("REFRESH_RATE_LIMIT", "0/60"),
        ("LOGIN_RATE_LIMIT", "a/b"),
        ("ALLOWED_ORIGINS", "*"),
        ("ALLOWED_ORIGINS", "https://app.example.com/path"),
        ("REFRESH_TOKEN_TRANSPORT", "header"),
        ("ACCESS_TOKEN_ALG", "HS256"),
        ("ACCESS_TOKEN_ALG", "none"),
        ("SENSITIVE_ROUTES", "FETCH /x"),
        ("SENSITIVE_ROUTES", "GET admin"),
        ("FINGERPRINT_BINDING", "maybe"),
        ("TOKEN_ISSUER", "ftp://issuer"),
        ("KEY_BACKEND", "vault"),
        ("PASSWORD_MIN_LENGTH", "0"),
        ("PASSWORD_MIN_LENGTH", "1025"),  # longer than any password a login accepts
    ],
)
def test_a_bad_value_names_the_variable_and_not_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
    assert caught.value.code == "invalid_config"
    if len(value) > 2:
        assert value not in str(caught.value)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="SESSION_MAX_AGE_SECONDS"):
        Settings.from_env({"SESSION_MAX_AGE_SECONDS": "3600", "REFRESH_TOKEN_TTL_SECONDS": "7200"})
    with pytest.raises(ConfigError, match="KMS_SIGNING_KEY_ID"):
        Settings.from_env({"KEY_BACKEND": "kms"})


def test_settings_are_built_on_first_use_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "120")
    reset_settings()
    assert get_settings().access_token_ttl_seconds == 120
    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "240")
    assert get_settings().access_token_ttl_seconds == 120  # frozen once built
    reset_settings()
    assert get_settings().access_token_ttl_seconds == 240


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.access_token_ttl_seconds = 1  # type: ignore[misc]
