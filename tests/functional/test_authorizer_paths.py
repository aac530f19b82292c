"""Paths as real APIs have them, and routes and roles as configuration (ROUTE_ROLES), through
the authorizer's handler with HTTP API, REST REQUEST and REST TOKEN events.

A percent-encoded character is never a reason to deny by itself: emails, spaces and non-ASCII
in a path are allowed. An encoding that could change a decision (``%2F``, dot segments, double
encoding, overlong UTF-8, a backslash, a NUL) is refused only where it could: when some
reading of the path needs a role the caller lacks (``ambiguous_path``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import STACK_ENV, Stack
from tests.functional.test_authorizer import (
    REST_STAGE,
    assert_unauthorized,
    deny_reasons,
    event,
    invoke,
    is_allowed,
    mint,
)
from tokencore.config import Settings
from tokencore.service import TokenGrant

ANALYST_RULES = "GET /reports/*=analyst|admin,* /admin/*=admin"


def http_event(grant: TokenGrant, method: str, raw_path: str, route: str) -> dict[str, Any]:
    evt = event("http-valid", grant)
    evt["routeKey"] = f"{method} {route}"
    evt["rawPath"] = raw_path
    evt["requestContext"]["http"]["method"] = method
    evt["requestContext"]["http"]["path"] = raw_path
    return evt


def rest_request_event(
    grant: TokenGrant, method: str, raw_path: str, resource: str
) -> dict[str, Any]:
    evt = event("rest-request-valid", grant)
    evt["methodArn"] = f"{REST_STAGE}/{method}{raw_path}"
    evt["httpMethod"] = method
    evt["path"] = raw_path
    evt["resource"] = resource
    evt["requestContext"]["httpMethod"] = method
    evt["requestContext"]["resourcePath"] = resource
    evt["requestContext"]["path"] = "/prod" + raw_path
    return evt


def rest_token_event(token: str, method: str, raw_path: str) -> dict[str, Any]:
    return {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {token}",
        "methodArn": f"{REST_STAGE}/{method}{raw_path}",
    }


def rest_allowed(response: dict[str, Any], method: str, raw_path: str) -> bool:
    return is_allowed(response, method, raw_path)


HARMLESS = [
    ("/users/a%40b.com", "/users/{email}"),
    ("/files/my%20doc.txt", "/files/{name}"),
    ("/search/caf%C3%A9", "/search/{term}"),
    ("/files/a%2Fb", "/files/{name}"),  # an encoded slash that reaches no rule either way
    ("/files/../me", "/files/{proxy+}"),  # dot segments that reach no rule either way
    ("/files/100%2525", "/files/{name}"),  # double encoding that decodes to nothing ruled
    ("/files/%C0%AFetc", "/files/{name}"),  # overlong '/', reaching no rule
    ("/files/back\\slash", "/files/{name}"),
    ("/files/nul%00here", "/files/{name}"),
    ("/files/%ZZ", "/files/{name}"),  # not an escape at all: taken as sent
]

# Each reaches /admin in some reading a proxy or backend could make, never in the canonical one.
AMBIGUOUS = [
    ("/x%2F..%2Fadmin/users", "/x/{proxy+}"),  # %2F
    ("/me/../admin/users", "/me/{proxy+}"),  # dot segments
    ("/me/%2E%2E/admin/users", "/me/{proxy+}"),  # encoded dot segments
    ("/%2561dmin/users", "/{proxy+}"),  # double encoding of 'a'
    ("/x/%C0%AE%C0%AE/admin/users", "/x/{proxy+}"),  # overlong '.'
    ("/x/..%C0%AFadmin/users", "/x/{proxy+}"),  # overlong '/'
    ("/x\\..\\admin", "/x/{proxy+}"),  # backslash as slash
    ("/admin%00/../x", "/{proxy+}"),  # cut at the NUL
]


@pytest.mark.parametrize(("raw_path", "route"), HARMLESS)
def test_percent_encoded_paths_are_allowed_on_every_event_kind(
    authz: Stack, raw_path: str, route: str
) -> None:
    grant = authz.login()
    response = invoke(http_event(grant, "GET", raw_path, route))
    assert response["isAuthorized"] is True
    rest = invoke(rest_request_event(grant, "GET", raw_path, route))
    assert rest_allowed(rest, "GET", raw_path)
    token = invoke(rest_token_event(mint(authz, grant), "GET", raw_path))
    assert rest_allowed(token, "GET", raw_path)


@pytest.mark.parametrize(("raw_path", "route"), AMBIGUOUS)
def test_encodings_that_reach_a_ruled_route_are_refused_only_for_callers_without_the_role(
    authz: Stack, capsys: pytest.CaptureFixture[str], raw_path: str, route: str
) -> None:
    grant = authz.login()
    assert invoke(http_event(grant, "GET", raw_path, route)) == {"isAuthorized": False}
    rest = invoke(rest_request_event(grant, "GET", raw_path, route))
    assert not rest_allowed(rest, "GET", raw_path)
    assert deny_reasons(capsys) == ["ambiguous_path", "ambiguous_path"]
    # An admin satisfies every reading: the same bytes are no reason to deny.
    admin = authz.login_admin()
    assert invoke(http_event(admin, "GET", raw_path, route))["isAuthorized"] is True
    admin_rest = invoke(rest_request_event(admin, "GET", raw_path, route))
    assert rest_allowed(admin_rest, "GET", raw_path)


def test_an_encoded_letter_is_decoded_once_and_meets_the_rule(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    assert invoke(http_event(grant, "GET", "/%61dmin/users", "/{proxy+}")) == {
        "isAuthorized": False
    }
    assert deny_reasons(capsys) == ["insufficient_role"]


def test_route_roles_from_the_environment_on_http_and_rest(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    authz.rewire(settings=Settings.from_env({**STACK_ENV, "ROUTE_ROLES": ANALYST_RULES}))
    grant = authz.login()  # role "user"
    admin = authz.login_admin()
    # HTTP API: the template and the canonical path both meet the rule.
    assert invoke(http_event(grant, "GET", "/reports/q1", "/reports/{id}")) == {
        "isAuthorized": False
    }
    assert invoke(http_event(grant, "GET", "/reports", "/reports")) == {"isAuthorized": False}
    assert invoke(http_event(grant, "POST", "/reports/q1", "/reports/{id}"))["isAuthorized"]
    assert invoke(http_event(admin, "GET", "/reports/q1", "/reports/{id}"))["isAuthorized"]
    # A route template alone is enough (a base path mapping hides the path).
    assert invoke(http_event(grant, "GET", "/v1/reports/q1", "/reports/{id}")) == {
        "isAuthorized": False
    }
    assert deny_reasons(capsys) == ["insufficient_role"] * 3

    # REST REQUEST: an explicit Deny on this route, and a policy that stays right when API
    # Gateway reuses it (cached) for the caller's other routes.
    denied = invoke(rest_request_event(grant, "GET", "/reports/q1", "/reports/{id}"))
    assert not rest_allowed(denied, "GET", "/reports/q1")
    allowed = invoke(rest_request_event(grant, "GET", "/me", "/me"))
    for method, path, expected in [
        ("GET", "/me", True),
        ("POST", "/reports/q1", True),
        ("GET", "/reports", False),
        ("GET", "/reports/q2", False),
        ("GET", "/reports/2027/q2", False),
        ("DELETE", "/admin/users/u1", False),
        ("GET", "/admin", False),
    ]:
        assert rest_allowed(allowed, method, path) is expected, (method, path)
    admin_policy = invoke(rest_request_event(admin, "GET", "/me", "/me"))
    assert rest_allowed(admin_policy, "GET", "/reports/q2")
    assert rest_allowed(admin_policy, "GET", "/admin/x")
    # REST TOKEN: the same rules on the method ARN's path.
    token = mint(authz, grant)
    assert not rest_allowed(
        invoke(rest_token_event(token, "GET", "/reports/q1")), "GET", "/reports/q1"
    )
    admin_token = mint(authz, admin, subject=authz.admin.user_id, roles=authz.admin.roles)
    admin_token_policy = invoke(rest_token_event(admin_token, "GET", "/reports/q1"))
    assert rest_allowed(admin_token_policy, "GET", "/reports/q1")
    assert rest_allowed(admin_token_policy, "GET", "/admin/users")
    # A route a rule meets reads the user: a role the token claims but the user no longer
    # holds is refused at once (role_removed), with the rule named.
    capsys.readouterr()
    stale = mint(authz, grant, roles=("analyst",))
    assert not rest_allowed(
        invoke(rest_token_event(stale, "GET", "/reports/q1")), "GET", "/reports/q1"
    )
    assert deny_reasons(capsys) == ["role_removed"]


def test_a_route_denial_is_logged_with_its_reason_and_rule(
    authz: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    authz.rewire(settings=Settings.from_env({**STACK_ENV, "ROUTE_ROLES": ANALYST_RULES}))
    grant = authz.login()
    assert invoke(http_event(grant, "GET", "/reports/q1", "/reports/{id}")) == {
        "isAuthorized": False
    }
    (record,) = [r for r in caplog.records if r.getMessage() == "authorizer denied"]
    assert record.__dict__["reason"] == "insufficient_role"
    assert record.__dict__["route_rule"] == "GET /reports/*=analyst|admin"
    assert record.__dict__["security_event"] == "authorizer_denied"


def test_no_route_roles_leaves_roles_to_the_backends(authz: Stack) -> None:
    authz.rewire(settings=Settings.from_env({**STACK_ENV, "ROUTE_ROLES": "none"}))
    grant = authz.login()
    evt = http_event(grant, "POST", "/admin/users/u1/revoke", "/admin/users/{user_id}/revoke")
    response = invoke(evt)
    assert response["isAuthorized"] is True
    assert response["context"]["roles"] == "user"  # what the backend decides on


def test_a_malformed_route_template_denies(authz: Stack) -> None:
    grant = authz.login()
    evt = rest_request_event(grant, "GET", "/me", "/me/../x")
    assert not rest_allowed(invoke(evt), "GET", "/me")
    with pytest.raises(Exception, match="Unauthorized"):
        invoke(rest_token_event("not-a-token", "GET", "/me"))
    assert_unauthorized(rest_token_event("x.y.z", "GET", "/me"))
