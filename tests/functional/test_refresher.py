"""The refresher: POST /auth/refresh, driven by events/refresher/*.json."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from tests.functional.conftest import Stack, load_event
from tests.functional.test_http_edge import (
    HttpResult,
    Scenario,
    assert_cookies_cleared,
    assert_no_store,
    assert_security_headers,
    check_scenarios,
    edge_runtime,  # noqa: F401  (a fixture)
    every_event_file,
    invoke,
    metric_values,
    security_events,
    send,
)
from tokencore.errors import StoreUnavailable
from tokencore.http import FINGERPRINT_COOKIE, REFRESH_COOKIE
from tokencore.jose.codec import b64url_decode, b64url_encode
from tokencore.runtime import get_runtime
from tokencore.service import TokenGrant

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "the refresh token is invalid, expired or revoked",
}


def _use_transport(stack: Stack, transport: Any) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, refresh_token_transport=transport)


def _refresh(grant_token: str, fingerprint: str = "") -> HttpResult:
    return send("refresher/refresh-cookie.json", refresh_token=grant_token, fingerprint=fingerprint)


def _assert_rejected(result: HttpResult) -> None:
    assert result.status == 401
    assert result.json() == INVALID_GRANT
    assert result.headers["www-authenticate"] == 'Bearer realm="tokencore"'
    assert_cookies_cleared(result)
    assert_no_store(result)
    assert_security_headers(result)


def _assert_rotated(result: HttpResult, stack: Stack, before: TokenGrant) -> str:
    """A 200 with a new access token and a new refresh token; returns the new refresh token."""
    assert result.status == 200, result.body
    body = result.json()
    assert body["session_id"] == before.session_id
    assert body["token_type"] == "Bearer"
    assert body["access_token"] != before.access_token
    claims = stack.runtime.auth.verify_access(body["access_token"])
    assert claims.session_id == before.session_id
    refresh = result.cookies.get(REFRESH_COOKIE)
    token: str = refresh.value if refresh else body["refresh_token"]
    assert token != before.refresh_token
    assert_no_store(result)
    return token


# --- one scenario per event file -------------------------------------------------------------


def refresh_cookie(stack: Stack) -> None:
    grant = stack.login()
    result = _refresh(grant.refresh_token, grant.fingerprint or "")
    new_token = _assert_rotated(result, stack, grant)
    cookie = result.cookies[REFRESH_COOKIE]
    assert cookie.value == new_token
    assert cookie.attributes["path"] == "/auth"
    assert {"httponly", "secure"} <= set(cookie.attributes)
    assert cookie.attributes["samesite"] == "Strict"
    # The fingerprint is kept across refreshes (other tabs still hold tokens bound to it).
    assert result.cookies[FINGERPRINT_COOKIE].value == grant.fingerprint
    assert "refresh_token" not in result.json()


def refresh_body(stack: Stack) -> None:
    _use_transport(stack, "body")
    grant = stack.login()
    result = send(
        "refresher/refresh-body.json",
        refresh_token=grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )
    new_token = _assert_rotated(result, stack, grant)
    assert result.json()["refresh_token"] == new_token
    assert REFRESH_COOKIE not in result.cookies


def refresh_missing(stack: Stack) -> None:
    result = send("refresher/refresh-missing.json")
    assert result.status == 400
    assert result.json()["error"] == "invalid_request"
    assert_cookies_cleared(result)


SCENARIOS: dict[str, Scenario] = {
    "refresh-cookie.json": refresh_cookie,
    "refresh-body.json": refresh_body,
    "refresh-missing.json": refresh_missing,
}


@pytest.mark.parametrize("name", every_event_file("refresher"))
def test_event(stack: Stack, name: str) -> None:
    check_scenarios("refresher", name, SCENARIOS, stack)


# --- reuse -----------------------------------------------------------------------------------


def test_a_reused_refresh_token_revokes_the_session_and_clears_the_cookies(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    grant = stack.login()
    successor = _assert_rotated(_refresh(grant.refresh_token), stack, grant)
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds + 1)

    with caplog.at_level(logging.INFO):
        reused = _refresh(grant.refresh_token, grant.fingerprint or "")
    _assert_rejected(reused)

    session = stack.runtime.sessions.get_session(grant.session_id, active_only=False)
    assert session.status == "revoked"
    assert session.revoked_reason == "refresh_reuse"
    # The thief's copy and the victim's successor are both dead now.
    _assert_rejected(_refresh(successor))

    out = capsys.readouterr().out
    assert metric_values(out, "RefreshReuse", classification="recent_previous") == [1.0]
    assert metric_values(out, "Revocation", reason="refresh_reuse") == [1.0]
    (event,) = security_events(caplog, "refresh_reuse")
    assert event.__dict__["classification"] == "recent_previous"
    assert len(event.__dict__["session_id_hash"]) == 16
    assert grant.session_id not in caplog.text


def test_an_older_generation_is_stale_lineage(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = stack.login()
    second = _assert_rotated(_refresh(grant.refresh_token), stack, grant)
    stack.clock.advance(1)
    _assert_rotated(_refresh(second), stack, grant)
    _assert_rejected(_refresh(grant.refresh_token))
    out = capsys.readouterr().out
    assert metric_values(out, "RefreshReuse", classification="stale_lineage") == [1.0]


def test_the_previous_token_inside_the_grace_window_gets_the_same_successor(stack: Stack) -> None:
    grant = stack.login()
    first = _refresh(grant.refresh_token, grant.fingerprint or "")
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds - 1)
    again = _refresh(grant.refresh_token, grant.fingerprint or "")
    assert again.status == 200
    assert again.cookies[REFRESH_COOKIE].value == first.cookies[REFRESH_COOKIE].value
    assert stack.runtime.sessions.get_session(grant.session_id).status == "active"


# --- every failure looks the same --------------------------------------------------------------


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0x01
    return f"{header}.{payload}.{b64url_encode(bytes(raw))}"


def _failures(stack: Stack) -> dict[str, HttpResult]:
    """One refresh attempt per kind of bad token, each against its own session."""
    results: dict[str, HttpResult] = {}

    forged = stack.login()
    results["forged"] = _refresh(_tampered(forged.refresh_token))
    results["garbage"] = _refresh("not-a-token")
    results["access_as_refresh"] = _refresh(stack.login().access_token)
    results["oversized"] = _refresh("a" * 5000)

    revoked = stack.login()
    stack.runtime.auth.logout(refresh_token=revoked.refresh_token)
    results["revoked"] = _refresh(revoked.refresh_token)

    reused = stack.login()
    _refresh(reused.refresh_token)
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds + 1)
    results["reused"] = _refresh(reused.refresh_token)

    disabled = stack.login("root", "admin passphrase for tests only")
    stack.runtime.users.disable_user(stack.admin.user_id)
    results["disabled_user"] = _refresh(disabled.refresh_token)

    expired = stack.login()
    stack.clock.advance(stack.settings.refresh_token_ttl_seconds + 120)
    results["expired"] = _refresh(expired.refresh_token)
    return results


def test_every_refresh_failure_is_indistinguishable(stack: Stack) -> None:
    results = _failures(stack)
    reference = results["forged"].comparable()
    for kind, result in results.items():
        _assert_rejected(result)
        assert result.comparable() == reference, kind


# --- transports ------------------------------------------------------------------------------


def test_with_cookie_transport_a_body_token_is_ignored(stack: Stack) -> None:
    grant = stack.login()
    result = send(
        "refresher/refresh-body.json",
        refresh_token=grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )
    assert result.status == 400  # no cookie: the body is not a transport here
    assert result.json()["error"] == "invalid_request"


def test_with_body_transport_the_cookie_is_ignored(stack: Stack) -> None:
    _use_transport(stack, "body")
    grant = stack.login()
    assert send("refresher/refresh-cookie.json", refresh_token=grant.refresh_token).status == 400


def test_with_both_an_explicit_body_token_wins(stack: Stack) -> None:
    _use_transport(stack, "both")
    grant = stack.login()
    event = load_event(
        "refresher/refresh-body.json",
        refresh_token=grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )
    event["cookies"].append("__Secure-rt=stale.cookie.value")
    result = invoke("refresher", event)
    token = _assert_rotated(result, stack, grant)
    assert result.json()["refresh_token"] == token == result.cookies[REFRESH_COOKIE].value


def test_with_both_the_cookie_is_used_without_a_body(stack: Stack) -> None:
    _use_transport(stack, "both")
    grant = stack.login()
    _assert_rotated(_refresh(grant.refresh_token), stack, grant)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{", "application/json", 400),
        ('{"refresh_token":5}', "application/json", 400),
        ('{"refresh_token":"x"}', "text/plain", 415),
        ("[]", "application/json", 400),
        ("{}", "application/json", 400),
    ],
)
@pytest.mark.usefixtures("edge_runtime")
def test_a_malformed_refresh_body_is_an_invalid_request(
    body: str, content_type: str, status: int
) -> None:
    runtime = get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, refresh_token_transport="body")
    event = load_event("refresher/refresh-body.json", refresh_token="x", fingerprint="y")
    event["body"] = body
    event["headers"]["content-type"] = content_type
    # A text/plain body without it is a cross-site refusal (tests/security/test_cross_site.py).
    event["headers"]["x-requested-with"] = "tokencore"
    result = invoke("refresher", event)
    assert result.status == status
    assert result.json()["error"] == "invalid_request"
    assert_cookies_cleared(result)


# --- limits and faults keep the cookies ----------------------------------------------------------


@pytest.fixture
def tight_refresh_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRESH_RATE_LIMIT", "1/60")


def test_a_rate_limited_refresh_keeps_the_cookies(
    tight_refresh_limit: None, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = stack.login()
    token = _assert_rotated(_refresh(grant.refresh_token), stack, grant)
    limited = _refresh(token)
    assert limited.status == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.cookies == {}  # the token is still good: retry after the window
    assert metric_values(capsys.readouterr().out, "RateLimited") == [1.0]
    stack.clock.advance(61)
    assert _refresh(token).status == 200


def test_a_store_fault_is_a_503_that_keeps_the_cookies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = stack.login()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("throttled")

    monkeypatch.setattr(stack.runtime.sessions, "rotate", unavailable)
    result = _refresh(grant.refresh_token)
    assert result.status == 503
    assert result.json()["error"] == "temporarily_unavailable"
    assert "retry-after" in result.headers
    assert result.cookies == {}
    monkeypatch.undo()
    assert _refresh(grant.refresh_token).status == 200  # nothing was revoked
