"""Login, the protected routes, refresh, reuse detection, logout and rate limits, over HTTP
against the local stack, as a browser-like client sees them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tests.e2e.client import Client
from tests.e2e.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEMO_PASSWORD,
    DEMO_USER,
    STRICT_USERS,
    RunningStack,
)
from tokencore.config import Settings

pytestmark = pytest.mark.e2e

REFRESH_COOKIE = "__Secure-rt"
FINGERPRINT_COOKIE = "__Host-fgp"


def claims_of(token: str) -> dict[str, Any]:
    """A token's payload, read without verifying (tests inspect what they were given)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def header_of(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def logged_in(stack: RunningStack, username: str, password: str) -> tuple[Client, dict[str, Any]]:
    client = stack.client()
    response = client.login(username, password)
    assert response.status == 200, response.body
    return client, response.json()


def test_login_me_refresh_logout(stack: RunningStack) -> None:
    client = stack.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    grant = login.json()
    assert grant["token_type"] == "Bearer"
    assert grant["expires_in"] == 900
    assert "refresh_token" not in grant  # REFRESH_TOKEN_TRANSPORT=cookie
    assert login.header("Cache-Control") == "no-store"
    assert (REFRESH_COOKIE, "/auth") in client.cookies
    assert (FINGERPRINT_COOKIE, "/") in client.cookies
    for set_cookie in login.header_values("Set-Cookie"):
        assert {"HttpOnly", "Secure", "SameSite=Strict"} <= {
            part.strip() for part in set_cookie.split(";")
        }

    me = client.request("GET", "/me", bearer=grant["access_token"])
    assert me.status == 200, me.body
    assert me.json()["session_id"] == grant["session_id"]
    assert me.json()["email"] == "demo@example.com"
    assert me.json()["roles"] == ["user"]

    old_refresh = client.cookie(REFRESH_COOKIE)
    refreshed = client.refresh()
    assert refreshed.status == 200, refreshed.body
    assert refreshed.header("Cache-Control") == "no-store"
    assert client.cookie(REFRESH_COOKIE) != old_refresh  # rotated
    assert refreshed.json()["session_id"] == grant["session_id"]
    assert client.request("GET", "/me", bearer=refreshed.json()["access_token"]).status == 200

    logout = client.logout()
    assert logout.status == 204
    assert client.cookie(REFRESH_COOKIE) is None  # cleared with Max-Age=0
    assert client.cookie(FINGERPRINT_COOKIE) is None
    assert client.logout().status == 204  # idempotent

    after = stack.client()
    after.cookies[(REFRESH_COOKIE, "/auth")] = str(old_refresh)
    assert after.refresh().status == 401


def test_gateway_answers_before_any_function(stack: RunningStack) -> None:
    client = stack.client()
    missing = client.request("GET", "/me")
    assert (missing.status, missing.json()) == (401, {"message": "Unauthorized"})
    forged = client.request("GET", "/me", bearer="not.a.token")
    assert (forged.status, forged.json()) == (403, {"message": "Forbidden"})
    unknown = client.request("GET", "/nowhere")
    assert (unknown.status, unknown.json()) == (404, {"message": "Not Found"})
    wrong_method = client.request("PUT", "/auth/login")
    assert wrong_method.status == 404


def test_access_token_is_bound_to_the_fingerprint_cookie(stack: RunningStack) -> None:
    client, grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    stranger = stack.client()  # the same bearer token, without the cookie
    assert stranger.request("GET", "/me", bearer=grant["access_token"]).status == 403
    assert client.request("GET", "/me", bearer=grant["access_token"]).status == 200


def test_revoked_session_is_denied_on_sensitive_routes(stack: RunningStack) -> None:
    client, grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    token = grant["access_token"]
    # Sensitive (DELETE /auth/sessions/*): the authorizer reads the session and lets it through;
    # the revoker answers 404 for a session that is not the caller's.
    assert client.request("DELETE", "/auth/sessions/not-mine", bearer=token).status == 404

    holder = client.copy()  # whoever kept the token and its fingerprint cookie
    assert client.logout().status == 204
    denied = holder.request("DELETE", "/auth/sessions/not-mine", bearer=token)
    assert (denied.status, denied.json()) == (403, {"message": "Forbidden"})
    revoke_all = holder.request("POST", "/auth/sessions/revoke-all", bearer=token)
    assert revoke_all.status == 403
    # A non-sensitive route reads no session (SESSION_CHECK_SAMPLE_RATE=0 on this stack), yet
    # the revocation list denies it too: certainly once every authorizer container's copy has
    # reached its stale bound (3 x REVOCATION_PROPAGATION_SECONDS), and usually sooner
    # (tests/e2e/test_revocation.py measures how soon).
    stack.advance_clock(3 * Settings().revocation_propagation_seconds)
    assert holder.request("GET", "/me", bearer=token).status == 403


def test_admin_route_needs_the_admin_role(stack: RunningStack) -> None:
    user, user_grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    target = user.request("GET", "/me", bearer=user_grant["access_token"]).json()["user_id"]
    path = f"/admin/users/{target}/revoke"
    refused = user.request("POST", path, bearer=user_grant["access_token"])
    assert (refused.status, refused.json()) == (403, {"message": "Forbidden"})

    admin, admin_grant = logged_in(stack, ADMIN_USER, ADMIN_PASSWORD)
    assert admin.request("POST", path, bearer=admin_grant["access_token"]).status == 204
    # Every session of the target is revoked now.
    assert user.refresh().status == 401


def test_sessions_listing_marks_the_current_one(stack: RunningStack) -> None:
    first, first_grant = logged_in(stack, ADMIN_USER, ADMIN_PASSWORD)
    _second, second_grant = logged_in(stack, ADMIN_USER, ADMIN_PASSWORD)
    listing = first.request("GET", "/auth/sessions", bearer=first_grant["access_token"])
    assert listing.status == 200, listing.body
    sessions = {s["session_id"]: s for s in listing.json()["sessions"]}
    assert sessions[first_grant["session_id"]]["current"] is True
    assert sessions[second_grant["session_id"]]["current"] is False


def test_access_token_verifies_with_an_independent_library(stack: RunningStack) -> None:
    """joserfc, given nothing but discovery and the JWKS it points to."""
    client, grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    anonymous = stack.client()
    discovery = anonymous.request("GET", "/.well-known/openid-configuration").json()
    assert discovery["issuer"] == stack.base_url
    jwks_path = discovery["jwks_uri"].removeprefix(stack.base_url)
    assert jwks_path != discovery["jwks_uri"], "jwks_uri must point at this issuer"
    jwks = anonymous.request("GET", jwks_path).json()
    assert all("d" not in key and key["kty"] != "oct" for key in jwks["keys"])

    key_set = KeySet.import_key_set(jwks)
    token = jwt.decode(grant["access_token"], key_set, algorithms=["RS256", "ES256", "EdDSA"])
    assert token.header["typ"] == "at+jwt"
    registry = jwt.JWTClaimsRegistry(
        now=int(stack.clock()),  # tests move the stack's clock ahead of the wall clock
        leeway=30,
        iss={"essential": True, "value": discovery["issuer"]},
        aud={"essential": True, "value": "tokencore-api"},
        sub={"essential": True},
        exp={"essential": True},
    )
    registry.validate(token.claims)
    assert token.claims["sid"] == grant["session_id"]

    # The refresh token (HS256, its own key) can never verify against the published keys.
    refresh_token = client.cookie(REFRESH_COOKIE)
    assert refresh_token is not None
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(refresh_token, key_set, algorithms=["RS256", "ES256", "EdDSA", "HS256"])


def test_replayed_refresh_token_revokes_the_whole_session(strict_stack: RunningStack) -> None:
    """REFRESH_REUSE_GRACE_SECONDS=0: the previous token is reuse at once."""
    password = STRICT_USERS["replayer"]
    client, grant = logged_in(strict_stack, "replayer", password)
    before = client.copy()  # holds the original refresh token
    refreshed = client.refresh()
    assert refreshed.status == 200, refreshed.body
    new_access = refreshed.json()["access_token"]

    replay = before.refresh()
    assert replay.status == 401
    assert replay.json()["error"] == "invalid_grant"
    # The whole session is revoked: the successor fails too, and so does its access token on a
    # sensitive route.
    assert client.refresh().status == 401
    sensitive = client.request("POST", "/auth/sessions/revoke-all", bearer=new_access)
    assert sensitive.status == 403
    # A fresh login is unaffected.
    fresh = strict_stack.client().login("replayer", password)
    assert fresh.status == 200
    assert fresh.json()["session_id"] != grant["session_id"]


def test_refresh_rate_limit_answers_429_with_retry_after(strict_stack: RunningStack) -> None:
    """REFRESH_RATE_LIMIT=3/60 on this stack."""
    client, _ = logged_in(strict_stack, "hurried", STRICT_USERS["hurried"])
    # Fixed windows: if the burst straddles a window boundary, the count starts again once,
    # so allow a second window before the limit must bite.
    statuses = []
    limited = None
    for _ in range(7):
        response = client.refresh()
        statuses.append(response.status)
        if response.status == 429:
            limited = response
            break
    assert statuses[:3] == [200, 200, 200]
    assert limited is not None, statuses
    assert limited.json()["error"] == "rate_limited"
    retry_after = limited.header("Retry-After")
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 60
