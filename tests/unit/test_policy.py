from __future__ import annotations

import random

import pytest

from tokencore.config import RoleRule, RoutePattern, Settings
from tokencore.paths import read_path, template_segments
from tokencore.policy import Policy, SessionCheckReason, route_matches
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
        # A trailing /* is the subtree: its root included.
        (RoutePattern("DELETE", "/auth/sessions/*"), "DELETE", "/auth/sessions", True),
        (RoutePattern("DELETE", "/auth/sessions/*"), "DELETE", "/auth", False),
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
    ("raw", "canonical", "alternates"),
    [
        ("/me", ("me",), set()),
        ("//admin//users", ("admin", "users"), set()),
        ("/users/a%40b.com", ("users", "a@b.com"), set()),
        ("/search/caf%C3%A9", ("search", "café"), set()),
        ("/files/a%2Fb", ("files", "a/b"), {("files", "a", "b")}),
        ("/me/../admin/x", ("me", "..", "admin", "x"), {("admin", "x")}),
        ("/%2561dmin", ("%61dmin",), {("admin",)}),
        ("/x/%C0%AE%C0%AE/y", ("x", "%C0%AE%C0%AE", "y"), {("y",)}),
        ("/a\\b", ("a\\b",), {("a", "b")}),
        ("/a%00/b", ("a\x00", "b"), {("a",)}),
    ],
)
def test_path_readings(
    raw: str, canonical: tuple[str, ...], alternates: set[tuple[str, ...]]
) -> None:
    readings = read_path(raw)
    assert readings is not None
    assert readings.canonical == canonical
    assert alternates <= set(readings.alternates)
    if not alternates:
        assert readings.alternates == frozenset()


def test_what_is_not_a_path() -> None:
    assert read_path("admin") is None
    assert read_path("/" + "a" * 9000) is None
    assert template_segments("/users/{id}") == ("users", "{id}")
    for template in ("/a/../b", "/a%2Fb", "/a\\b", "x"):
        assert template_segments(template) is None


def test_admin_routes_need_the_admin_role() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0"}))
    denied = policy.decide(_claims(), "POST", "/admin/users/u1/revoke")
    assert not denied.allowed
    assert denied.deny_reason == "insufficient_role"
    assert denied.rule == RoleRule(RoutePattern("*", "/admin/*"), ("admin",))
    assert not policy.decide(_claims(), "GET", "/admin").allowed
    # Double slashes cannot smuggle a request past the role check.
    assert not policy.decide(_claims(), "POST", "//admin/users/u1/revoke").allowed
    allowed = policy.decide(_claims(("admin",)), "POST", "/admin/users/u1/revoke")
    assert allowed.allowed
    assert allowed.session_check is SessionCheckReason.SENSITIVE_ROUTE


def test_every_matching_rule_must_be_met_and_any_role_of_a_rule_meets_it() -> None:
    policy = Policy(
        Settings.from_env(
            {
                "SESSION_CHECK_SAMPLE_RATE": "0",
                "ROUTE_ROLES": "* /reports/*=analyst|auditor,DELETE /reports/*=admin",
            }
        )
    )
    assert policy.decide(_claims(("auditor",)), "GET", "/reports/q1").allowed
    assert not policy.decide(_claims(("auditor",)), "DELETE", "/reports/q1").allowed
    assert not policy.decide(_claims(("admin",)), "DELETE", "/reports/q1").allowed
    assert policy.decide(_claims(("admin", "analyst")), "DELETE", "/reports/q1").allowed
    # The default admin rule is replaced, not added to.
    assert policy.decide(_claims(), "GET", "/admin/x").allowed
    assert policy.unmet_rules(("analyst",)) == (
        RoleRule(RoutePattern("DELETE", "/reports/*"), ("admin",)),
    )


def test_the_route_template_and_every_reading_add_rules() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0"}))
    user = _claims()
    assert policy.decide(user, "GET", "/v1/x", "/admin/{proxy+}").deny_reason == "insufficient_role"
    assert policy.decide(user, "GET", "/x", "/x/../admin").deny_reason == "malformed_path"
    assert policy.decide(user, "GET", "/me/../admin").deny_reason == "ambiguous_path"
    assert policy.decide(user, "GET", "/files/../me").allowed
    # A reading that meets a sensitive pattern makes the route sensitive.
    decision = policy.decide(user, "DELETE", "/x/..%2Fauth/sessions/s1")
    assert decision.allowed
    assert decision.session_check is SessionCheckReason.SENSITIVE_ROUTE


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
    assert not policy.decide(_claims(), "GET", "me").allowed


def test_sampling_checks_about_the_configured_share() -> None:
    policy = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "0.1"}), random.Random(7))
    sampled = sum(
        policy.decide(_claims(), "GET", "/me").session_check is SessionCheckReason.SAMPLED
        for _ in range(10_000)
    )
    assert 850 < sampled < 1150
    always = Policy(Settings.from_env({"SESSION_CHECK_SAMPLE_RATE": "1"}))
    assert always.decide(_claims(), "GET", "/me").session_check is SessionCheckReason.SAMPLED
