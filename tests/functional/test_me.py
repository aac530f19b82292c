"""GET /me, the sample protected route, driven by events/me/*.json."""

from __future__ import annotations

import pytest

from tests.functional.conftest import Stack, load_event
from tests.functional.test_http_edge import (
    ALLOWED_ORIGIN,
    Scenario,
    assert_no_store,
    assert_security_headers,
    caller_placeholders,
    check_scenarios,
    edge_runtime,  # noqa: F401  (a fixture)
    every_event_file,
    invoke,
    send,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def me(stack: Stack) -> None:
    grant = stack.login()
    result = send("me/me.json", **caller_placeholders(stack, grant))
    assert result.status == 200
    assert result.json() == {
        "user_id": stack.user.user_id,
        "email": "alice@example.com",
        "roles": ["user"],
        "session_id": grant.session_id,
    }
    assert result.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert_no_store(result)
    assert_security_headers(result)
    assert result.cookies == {}


SCENARIOS: dict[str, Scenario] = {"me.json": me}


@pytest.mark.parametrize("name", every_event_file("me"))
def test_event(stack: Stack, name: str) -> None:
    check_scenarios("me", name, SCENARIOS, stack)


def test_roles_come_back_as_a_sorted_list(stack: Stack) -> None:
    grant = stack.login_admin()
    event = load_event("me/me.json", **caller_placeholders(stack, grant))
    event["requestContext"]["authorizer"]["lambda"]["roles"] = "user,admin,,user"
    event["requestContext"]["authorizer"]["lambda"]["email"] = ""
    body = invoke("me", event).json()
    assert body["roles"] == ["admin", "user"]
    assert body["email"] is None  # the authorizer sends "" for a user without email


def test_without_the_authorizer_context_me_is_401(stack: Stack) -> None:
    event = load_event("me/me.json", **caller_placeholders(stack, stack.login()))
    del event["requestContext"]["authorizer"]
    result = invoke("me", event)
    assert result.status == 401
    assert result.json()["error"] == "invalid_token"
    assert result.headers["www-authenticate"] == 'Bearer realm="tokencore", error="invalid_token"'


@pytest.mark.usefixtures("edge_runtime")
def test_a_wrong_method_on_me_is_404() -> None:
    event = load_event("me/me.json", user_id="u", session_id="s", expires_at="1")
    event["requestContext"]["http"]["method"] = "DELETE"
    result = invoke("me", event)
    assert result.status == 404
    assert result.json()["error"] == "not_found"
