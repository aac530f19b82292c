"""The revoker: logout and session management, driven by events/revoker/*.json."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from tests.functional.conftest import ADMIN_PASSWORD, Stack, load_event
from tests.functional.test_http_edge import (
    HttpResult,
    Scenario,
    assert_cookies_cleared,
    assert_no_store,
    caller_placeholders,
    check_scenarios,
    every_event_file,
    invoke,
    metric_values,
    security_events,
    send,
)
from tokencore.errors import StoreUnavailable
from tokencore.service import TokenGrant

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "the access token is invalid, expired or revoked",
}
PROTECTED = [
    "revoker/sessions-list.json",
    "revoker/sessions-delete.json",
    "revoker/revoke-all.json",
    "revoker/admin-revoke.json",
]


def _status(stack: Stack, session_id: str) -> str:
    status: str = stack.runtime.sessions.get_session(session_id, active_only=False).status
    return status


def _as(stack: Stack, grant: TokenGrant, relative: str, **extra: str) -> HttpResult:
    return send(relative, **caller_placeholders(stack, grant), **extra)


# --- one scenario per event file -------------------------------------------------------------


def logout_cookie(stack: Stack) -> None:
    grant = stack.login()
    result = send(
        "revoker/logout-cookie.json",
        refresh_token=grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )
    assert result.status == 204
    assert result.body == ""
    assert_cookies_cleared(result)
    assert_no_store(result)
    assert _status(stack, grant.session_id) == "revoked"


def logout_bearer(stack: Stack) -> None:
    grant = stack.login()
    # The bearer token is bound to its fingerprint cookie: without the right one (a copied
    # token) it names no session, and the answer is the same 204.
    stolen = send("revoker/logout-bearer.json", access_token=grant.access_token, fingerprint="")
    assert stolen.status == 204
    assert _status(stack, grant.session_id) == "active"
    result = send(
        "revoker/logout-bearer.json",
        access_token=grant.access_token,
        fingerprint=grant.fingerprint or "",
    )
    assert result.status == 204
    assert_cookies_cleared(result)
    assert _status(stack, grant.session_id) == "revoked"


def sessions_list(stack: Stack) -> None:
    laptop = stack.login(device_id="laptop-1")
    stack.clock.advance(90)
    phone = stack.login(device_id="phone-2")
    stack.login_admin()  # someone else's session never shows up
    result = _as(stack, phone, "revoker/sessions-list.json")
    assert result.status == 200
    assert_no_store(result)
    sessions = result.json()["sessions"]
    assert sessions == [
        {
            "session_id": laptop.session_id,
            "created_at": "2027-01-15T08:00:00Z",
            "last_activity": "2027-01-15T08:00:00Z",
            "device_id": "laptop-1",
            "current": False,
        },
        {
            "session_id": phone.session_id,
            "created_at": "2027-01-15T08:01:30Z",
            "last_activity": "2027-01-15T08:01:30Z",
            "device_id": "phone-2",
            "current": True,
        },
    ]


def sessions_delete(stack: Stack) -> None:
    current = stack.login()
    other = stack.login()
    result = _as(stack, current, "revoker/sessions-delete.json", target_session_id=other.session_id)
    assert result.status == 204
    assert result.cookies == {}  # another of my sessions: this browser stays logged in
    assert _status(stack, other.session_id) == "revoked"
    assert _status(stack, current.session_id) == "active"
    # Ending the current session from the list logs this browser out too.
    mine = _as(stack, current, "revoker/sessions-delete.json", target_session_id=current.session_id)
    assert mine.status == 204
    assert_cookies_cleared(mine)
    assert _status(stack, current.session_id) == "revoked"


def sessions_delete_other(stack: Stack) -> None:
    alice = stack.login()
    root = stack.login_admin()
    result = _as(
        stack, alice, "revoker/sessions-delete-other.json", target_session_id=root.session_id
    )
    unknown = _as(
        stack,
        alice,
        "revoker/sessions-delete-other.json",
        target_session_id="AAAAAAAAAAAAAAAAAAAAAA",
    )
    assert result.status == 404
    assert result.json() == {"error": "not_found", "error_description": "not found"}
    # Another user's session and a session that does not exist cannot be told apart.
    assert result.comparable() == unknown.comparable()
    assert _status(stack, root.session_id) == "active"


def revoke_all(stack: Stack) -> None:
    grants = [stack.login() for _ in range(3)]
    root = stack.login_admin()
    result = _as(stack, grants[0], "revoker/revoke-all.json")
    assert result.status == 204
    assert_cookies_cleared(result)
    assert all(_status(stack, grant.session_id) == "revoked" for grant in grants)
    assert _status(stack, root.session_id) == "active"
    assert stack.runtime.sessions.list_sessions(stack.user.user_id) == []


def admin_revoke(stack: Stack) -> None:
    victims = [stack.login(), stack.login()]
    root = stack.login_admin()
    result = _as(stack, root, "revoker/admin-revoke.json", target_user_id=stack.user.user_id)
    assert result.status == 204
    assert result.cookies == {}  # the admin's own session is untouched
    assert all(_status(stack, grant.session_id) == "revoked" for grant in victims)
    assert _status(stack, root.session_id) == "active"
    revoked = stack.runtime.sessions.get_session(victims[0].session_id, active_only=False)
    assert revoked.revoked_reason == "admin"


def admin_revoke_non_admin(stack: Stack) -> None:
    alice = stack.login()
    root = stack.login_admin()
    result = _as(
        stack, alice, "revoker/admin-revoke-non-admin.json", target_user_id=stack.admin.user_id
    )
    assert result.status == 403
    assert result.json() == {
        "error": "insufficient_scope",
        "error_description": "the access token does not grant access to this resource",
    }
    assert result.headers["www-authenticate"] == (
        'Bearer realm="tokencore", error="insufficient_scope"'
    )
    assert _status(stack, root.session_id) == "active"


SCENARIOS: dict[str, Scenario] = {
    "logout-cookie.json": logout_cookie,
    "logout-bearer.json": logout_bearer,
    "sessions-list.json": sessions_list,
    "sessions-delete.json": sessions_delete,
    "sessions-delete-other.json": sessions_delete_other,
    "revoke-all.json": revoke_all,
    "admin-revoke.json": admin_revoke,
    "admin-revoke-non-admin.json": admin_revoke_non_admin,
}


@pytest.mark.parametrize("name", every_event_file("revoker"))
def test_event(stack: Stack, name: str) -> None:
    check_scenarios("revoker", name, SCENARIOS, stack)


# --- logout ----------------------------------------------------------------------------------


def test_logout_is_idempotent_and_reveals_nothing(stack: Stack) -> None:
    grant = stack.login()
    placeholders = {"refresh_token": grant.refresh_token, "fingerprint": grant.fingerprint or ""}
    first = send("revoker/logout-cookie.json", **placeholders)
    again = send("revoker/logout-cookie.json", **placeholders)
    forged = send("revoker/logout-cookie.json", refresh_token="x.y.z", fingerprint="f")
    nothing = invoke("revoker", _without_credentials())
    bad_bearer = send("revoker/logout-bearer.json", access_token="not-a-token")
    for result in (first, again, forged, nothing, bad_bearer):
        assert result.status == 204
        assert_cookies_cleared(result)
    assert first.comparable() == again.comparable() == forged.comparable()


def _without_credentials() -> dict[str, Any]:
    event = load_event("revoker/logout-cookie.json")
    event.pop("cookies")
    return event


def test_logout_with_an_expired_refresh_token_still_answers_204(stack: Stack) -> None:
    grant = stack.login()
    stack.clock.advance(stack.settings.refresh_token_ttl_seconds + 120)
    result = send("revoker/logout-cookie.json", refresh_token=grant.refresh_token, fingerprint="")
    assert result.status == 204
    assert_cookies_cleared(result)


def test_logout_counts_revocations(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    grant = stack.login()
    bearer = {"access_token": grant.access_token, "fingerprint": grant.fingerprint or ""}
    send("revoker/logout-bearer.json", **bearer)
    send("revoker/logout-bearer.json", **bearer)
    assert metric_values(capsys.readouterr().out, "Revocation", reason="logout") == [1.0]


def test_a_logout_that_could_not_happen_is_a_503_that_keeps_the_cookies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = stack.login()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("throttled")

    monkeypatch.setattr(stack.runtime.sessions, "revoke", unavailable)
    result = send("revoker/logout-cookie.json", refresh_token=grant.refresh_token, fingerprint="")
    assert result.status == 503
    assert "retry-after" in result.headers
    assert result.cookies == {}  # the client can retry a logout that did not happen


def test_logout_with_body_transport_reads_the_body(stack: Stack) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, refresh_token_transport="body")
    grant = stack.login()
    event = load_event("revoker/logout-bearer.json", access_token="")
    event["headers"].pop("authorization")
    event["headers"]["content-type"] = "application/json"
    event["body"] = f'{{"refresh_token":"{grant.refresh_token}"}}'
    result = invoke("revoker", event)
    assert result.status == 204
    assert _status(stack, grant.session_id) == "revoked"
    event["body"] = "{not json"
    malformed = invoke("revoker", event)
    assert malformed.status == 400
    assert_cookies_cleared(malformed)


# --- the authorizer context ------------------------------------------------------------------


def _context_event(stack: Stack, relative: str, grant: TokenGrant) -> dict[str, Any]:
    return load_event(
        relative,
        **caller_placeholders(stack, grant),
        target_session_id=grant.session_id,
        target_user_id=stack.user.user_id,
    )


DAMAGES = [
    "no_authorizer",
    "no_lambda_context",
    "no_user_id",
    "user_id_not_a_string",
    "malformed_user_id",
    "no_session_id",
    "malformed_session_id",
    "expired",
    "expires_at_garbage",
]


def _damaged(stack: Stack, relative: str, grant: TokenGrant, damage: str) -> dict[str, Any]:
    event = _context_event(stack, relative, grant)
    context = event["requestContext"]["authorizer"]["lambda"]
    if damage == "no_authorizer":
        del event["requestContext"]["authorizer"]
    elif damage == "no_lambda_context":
        event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "x"}}}
    elif damage == "no_user_id":
        del context["user_id"]
    elif damage == "user_id_not_a_string":
        context["user_id"] = 42
    elif damage == "malformed_user_id":
        context["user_id"] = "../../etc"
    elif damage == "no_session_id":
        del context["session_id"]
    elif damage == "malformed_session_id":
        context["session_id"] = "a b"
    elif damage == "expired":
        # Expired past the leeway the authorizer allows (CLOCK_SKEW_LEEWAY_SECONDS).
        leeway = stack.settings.clock_skew_leeway_seconds
        context["expires_at"] = str(int(stack.clock.now()) - leeway)
    elif damage == "expires_at_garbage":
        context["expires_at"] = "tomorrow"
    return event


@pytest.mark.parametrize("relative", PROTECTED)
def test_a_missing_or_malformed_caller_is_401(stack: Stack, relative: str) -> None:
    grant = stack.login_admin()
    for damage in DAMAGES:
        result = invoke("revoker", _damaged(stack, relative, grant, damage))
        assert result.status == 401, damage
        assert result.json() == INVALID_TOKEN
        assert result.headers["www-authenticate"] == (
            'Bearer realm="tokencore", error="invalid_token"'
        )
        assert _status(stack, grant.session_id) == "active"


def test_expires_at_may_be_a_number(stack: Stack) -> None:
    grant = stack.login()
    event = _context_event(stack, "revoker/sessions-list.json", grant)
    context = event["requestContext"]["authorizer"]["lambda"]
    context["expires_at"] = int(context["expires_at"])
    assert invoke("revoker", event).status == 200
    del context["expires_at"]
    assert invoke("revoker", event).status == 200


# --- admin -----------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", ["", "user", "admins", "user,Admin", "administrator"])
def test_only_the_exact_admin_role_may_revoke_users(stack: Stack, roles: str) -> None:
    victim = stack.login()
    root = stack.login_admin()
    event = _context_event(stack, "revoker/admin-revoke.json", root)
    event["requestContext"]["authorizer"]["lambda"]["roles"] = roles
    result = invoke("revoker", event)
    assert result.status == 403
    assert _status(stack, victim.session_id) == "active"


def test_roles_may_be_spaced_or_a_list(stack: Stack) -> None:
    root = stack.login_admin()
    for roles in ("user, admin", ["user", "admin"]):
        event = _context_event(stack, "revoker/admin-revoke.json", root)
        event["requestContext"]["authorizer"]["lambda"]["roles"] = roles
        assert invoke("revoker", event).status == 204


@pytest.mark.parametrize(
    "target", ["00000000-0000-4000-8000-000000000000", "not a user id", "..%2F"]
)
def test_admin_revoke_of_an_unknown_user_is_404(stack: Stack, target: str) -> None:
    root = stack.login("root", ADMIN_PASSWORD)
    event = _context_event(stack, "revoker/admin-revoke.json", root)
    event["pathParameters"]["user_id"] = target
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/admin/users/x/revoke"
    result = invoke("revoker", event)
    assert result.status == 404


def test_admin_revocations_are_counted_and_reported(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    stack.login()
    stack.login()
    root = stack.login_admin()
    with caplog.at_level(logging.INFO):
        result = _as(stack, root, "revoker/admin-revoke.json", target_user_id=stack.user.user_id)
    assert result.status == 204
    assert metric_values(capsys.readouterr().out, "Revocation", reason="admin") == [2.0]
    (event,) = security_events(caplog, "sessions_revoked")
    assert event.__dict__["reason"] == "admin"
    assert event.__dict__["count"] == 2
    assert stack.user.user_id not in caplog.text


def test_a_denied_admin_attempt_is_a_security_event(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    alice = stack.login()
    with caplog.at_level(logging.INFO):
        _as(stack, alice, "revoker/admin-revoke-non-admin.json", target_user_id="x")
    assert security_events(caplog, "admin_denied")


def test_sessions_of_another_user_id_in_the_path_cannot_be_deleted_by_guessing(
    stack: Stack,
) -> None:
    alice = stack.login()
    root = stack.login_admin()
    # Even an admin's DELETE /auth/sessions/{id} is scoped to the admin's own sessions.
    result = _as(stack, root, "revoker/sessions-delete.json", target_session_id=alice.session_id)
    assert result.status == 404
    assert _status(stack, alice.session_id) == "active"
