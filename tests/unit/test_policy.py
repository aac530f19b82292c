from __future__ import annotations

import random

import pytest

from tokencore.config import RoutePattern, Settings
from tokencore.policy import (
    Policy,
    SessionCheckReason,
    normalize_path,
    required_role,
    route_matches,
)
from tokencore.tokens.claims import AccessClaims


def _claims(roles: tuple[str, ...] = ("user",), level: str | None = None) -> AccessClaims:
    return AccessClaims(
        subject="usr_1",
        session_id="sid_1",
        token_id="jti_1",
        issuer="https://issuer.example",
        audience="api",
        issued_at=0,
        expires_at=900,
        roles=roles,
        security_level=level,
    )


@pytest.mark.parametrize(
    ("pattern", "method", "path", "expected"),
    [
        (
            RoutePattern("POST", "/auth/sessions/revoke-all"),
            "POST",
            "/auth/sessions/revoke-all",
            True,
        ),
        (
            RoutePattern("POST", "/auth/sessions/revoke-all"),
            "GET",
            "/auth/sessions/revoke-all",
            False,
        ),
        (RoutePattern("DELETE", "/auth/sessions/*"), "DELETE", "/auth/sessions/abc", True),
        (RoutePattern("DELETE", "/auth/sessions/*"), "DELETE", "/auth/sessions", False),
        (RoutePattern("*", "/admin/*"), "POST", "/admin/users/u1/revoke", True),
        (RoutePattern("*", "/admin/*"), "GET", "/administrator", False),
        (RoutePattern("GET", "/users/*/profile"), "GET", "/users/42/profile", True),
        (RoutePattern("GET", "/users/*/profile"), "GET", "/users/42/other", False),
        (RoutePattern("get", "/me"), "GET", "/me/", True),
    ],
)
def test_route_patterns(pattern: RoutePattern, method: str, path: str, expected: bool) -> None:
    pattern = RoutePattern(pattern.method.upper(), pattern.path)
    assert route_matches(pattern, method, path) is expected


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/me", "/me"),
        ("//admin//users", "/admin/users"),
        ("/me/../admin/x", None),
        ("/./admin", None),
        ("/%61dmin/x", None),
        ("admin", None),
        ("/a\\b", None),
    ],
)
def test_paths_that_could_be_read_two_ways_are_refused(path: str, normalized: str | None) -> None:
    assert normalize_path(path) == normalized


def test_admin_routes_need_the_admin_role() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0"}))
    assert required_role("/admin/users/u1/revoke") == "admin"
    assert required_role("/me") is None
    denied = policy.decide(_claims(), "POST", "/admin/users/u1/revoke")
    assert not denied.allowed
    assert denied.deny_reason == "insufficient_role"
    # Double slashes cannot smuggle a request past the role check.
    assert not policy.decide(_claims(), "POST", "//admin/users/u1/revoke").allowed
    allowed = policy.decide(_claims(("admin",)), "POST", "/admin/users/u1/revoke")
    assert allowed.allowed
    assert allowed.session_check is SessionCheckReason.SENSITIVE_ROUTE


def test_session_check_reasons() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0"}))
    assert policy.decide(_claims(), "GET", "/me").session_check is None
    assert (
        policy.decide(_claims(), "DELETE", "/auth/sessions/s1").session_check
        is SessionCheckReason.SENSITIVE_ROUTE
    )
    assert (
        policy.decide(_claims(level="2"), "GET", "/me").session_check
        is SessionCheckReason.HIGH_SECURITY
    )
    assert not policy.decide(_claims(), "GET", "/me/../admin").allowed


def test_sampling_checks_about_the_configured_share() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0.1"}), random.Random(7))
    sampled = sum(
        policy.decide(_claims(), "GET", "/me").session_check is SessionCheckReason.SAMPLED
        for _ in range(10_000)
    )
    assert 850 < sampled < 1150
    always = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "1"}))
    assert always.decide(_claims(), "GET", "/me").session_check is SessionCheckReason.SAMPLED
