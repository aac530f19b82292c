"""The second hardening round (issue 17), over HTTP against the "sec" local stack.

Each test here failed on the code before the round: a sibling subdomain's form post logged a
user out; a revoked session's access token listed the user's live sessions and device ids; a
removed admin role kept the admin routes until the token expired; audit labels were unkeyed
SHA-256 (a dictionary reversed them); the local stack answered any Host, and its AWS endpoint
any web page; its access log printed raw ids.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import pytest

from tests.security.conftest import ALLOWED_ORIGIN
from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    Edge,
    Login,
    fresh_source_ip,
)
from tests.security.secrets_registry import REGISTRY
from tests.security.tally import record
from tokencore.users.base import username_rate_key

pytestmark = pytest.mark.e2e

SIBLING = "https://blog.example.com"  # same site as app.example.com, not an allowed origin
AUDIT_SECRET_NAME = "tokencore-local-AuditLabelKeySecret"


def _login(sec: Edge) -> Login:
    return sec.login(sec.new_account(prefix="round2"))


def _cookies(login: Login) -> dict[str, str]:
    return {REFRESH_COOKIE: login.refresh, FINGERPRINT_COOKIE: login.fingerprint}


def _refreshes(sec: Edge, login: Login) -> bool:
    """The login's refresh token still rotates (so nothing refused before rotated or revoked
    it); the answer's new token is registered by ``send``."""
    return sec.refresh(login.refresh, login.fingerprint).status == 200


# --- 1. cross-site requests on the cookie-authenticated routes --------------------------------

# Requests a same-site (or cross-site) page can make without a CORS preflight.
FORGED: Mapping[str, Mapping[str, str]] = {
    "sibling form post (text/plain)": {"Origin": SIBLING, "Content-Type": "text/plain"},
    "sibling form post (urlencoded)": {
        "Origin": SIBLING,
        "Content-Type": "application/x-www-form-urlencoded",
    },
    "sibling with X-Requested-With": {"Origin": SIBLING, "X-Requested-With": "x"},
    "null origin": {"Origin": "null", "Content-Type": "text/plain"},
    "suffix origin": {"Origin": "https://app.example.com.evil.test", "X-Requested-With": "x"},
    "no Origin, Sec-Fetch-Site same-site": {"Sec-Fetch-Site": "same-site"},
    "no Origin, Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
    "no Origin, sibling Referer": {"Referer": f"{SIBLING}/post"},
    "allowed origin, form content": {"Origin": ALLOWED_ORIGIN, "Content-Type": "text/plain"},
    "no header at all (a form the browser sent without Origin)": {},
}
# What the web client and other first-party clients send.
ACCEPTED: Mapping[str, Mapping[str, str]] = {
    "allowed origin": {"Origin": ALLOWED_ORIGIN, "X-Requested-With": "tokencore"},
    "no Origin (curl, a server)": {"X-Requested-With": "tokencore"},
    "same-origin fetch": {"Sec-Fetch-Site": "same-origin", "X-Requested-With": "tokencore"},
    "JSON body instead of the header": {
        "Origin": ALLOWED_ORIGIN,
        "Content-Type": "application/json",
    },
}


@pytest.mark.parametrize("route", ["/auth/refresh", "/auth/logout"])
def test_a_cross_site_request_to_a_cookie_route_is_refused_and_changes_nothing(
    sec: Edge, route: str
) -> None:
    login = _login(sec)
    for case, headers in FORGED.items():
        body = b"{}" if "Content-Type" in headers else None
        answer = sec.send(
            "POST",
            route,
            headers=dict(headers),
            body=body,
            cookies=_cookies(login),
            requested_with=False,
        )
        refused = answer.status == 403 and not answer.header_values("Set-Cookie")
        record("cross_site", f"{route} {case}", refused)
        assert refused, f"{case}: {answer.describe()}"
        assert answer.json()["error"] == "invalid_request"
    # Nothing rotated and nothing was revoked: the very same refresh token still works.
    assert _refreshes(sec, login)


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_first_party_requests_to_the_cookie_routes_are_accepted(sec: Edge, case: str) -> None:
    login = _login(sec)
    headers = dict(ACCEPTED[case])
    body = b"{}" if "Content-Type" in headers else None
    refreshed = sec.send(
        "POST",
        "/auth/refresh",
        headers=headers,
        body=body,
        cookies=_cookies(login),
        requested_with=False,
    )
    assert refreshed.status == 200, refreshed.describe()
    new_refresh = refreshed.cookies[REFRESH_COOKIE][0]
    logged_out = sec.send(
        "POST",
        "/auth/logout",
        headers=headers,
        body=body,
        cookies={REFRESH_COOKIE: new_refresh, FINGERPRINT_COOKIE: login.fingerprint},
        requested_with=False,
    )
    assert logged_out.status == 204, logged_out.describe()
    assert sec.refresh(new_refresh, login.fingerprint).status == 401  # the logout happened


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/sessions/revoke-all"),
        ("DELETE", "/auth/sessions/{session_id}"),
        ("GET", "/auth/sessions"),
        ("GET", "/me"),
    ],
)
def test_the_bearer_routes_never_act_on_cookies_alone(sec: Edge, method: str, path: str) -> None:
    """The authorizer reads the fingerprint cookie, but only beside a bearer token, which a
    form cannot send: a sibling's form post with the cookies is refused by the gateway."""
    login = _login(sec)
    answer = sec.send(
        method,
        path.format(session_id=login.session_id),
        headers={"Origin": SIBLING, "Content-Type": "text/plain"},
        cookies=_cookies(login),
        requested_with=False,
    )
    refused = answer.status == 401
    record("cross_site", f"{method} {path} cookies only", refused)
    assert refused, answer.describe()
    assert _refreshes(sec, login)


# --- 2. session and device data need a live session -------------------------------------------


def test_a_revoked_sessions_token_never_lists_the_users_sessions(sec: Edge) -> None:
    account = sec.new_account(prefix="round2")
    revoked = sec.login(account, device_id="old-laptop")
    sec.login(account, device_id="phone-1")
    answer = sec.send(
        "POST",
        "/auth/sessions/revoke-all",
        bearer=revoked.access,
        cookies={FINGERPRINT_COOKIE: revoked.fingerprint},
        headers={"X-Device-Id": "old-laptop"},
    )
    assert answer.status == 204, answer.describe()
    # The other session was revoked too; log in again: the device a thief would want to learn.
    sec.login(account, device_id="phone-2")
    for attempt in range(50):
        listing = sec.send(
            "GET",
            "/auth/sessions",
            bearer=revoked.access,
            cookies={FINGERPRINT_COOKIE: revoked.fingerprint},
            headers={"X-Device-Id": "old-laptop"},
        )
        refused = listing.status in (401, 403) and b"phone-2" not in listing.body
        record("revocation", f"GET /auth/sessions after revoke-all #{attempt}", refused)
        assert refused, listing.describe()


# --- 3. a removed role counts at the next request ---------------------------------------------


def test_an_admin_whose_role_is_removed_loses_the_admin_routes_at_once(
    sec: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    admin = sec.new_account(roles=("admin", "user"), prefix="round2-admin")
    target = sec.new_account(prefix="round2")
    login = sec.login(admin, device_id="desk")
    path = f"/admin/users/{target.user_id}/revoke"
    headers = {"X-Device-Id": "desk"}
    cookies = {FINGERPRINT_COOKIE: login.fingerprint}
    allowed = sec.send("POST", path, bearer=login.access, cookies=cookies, headers=headers)
    assert allowed.status == 204, allowed.describe()
    with caplog.at_level(logging.INFO, logger="tokencore.audit"):
        sec.users().set_roles(admin.user_id, ["user"])
    event: Any  # a LogRecord with the event's fields as attributes
    (event,) = [r for r in caplog.records if getattr(r, "security_event", "") == "roles_changed"]
    assert event.removed == ["admin"]
    assert event.added == []
    assert "user_id_hash" in event.__dict__
    assert admin.user_id not in caplog.text
    # The same (unexpired, validly signed) token that still says "admin":
    assert "admin" in login.claims["roles"]
    for attempt in range(5):
        denied = sec.send("POST", path, bearer=login.access, cookies=cookies, headers=headers)
        refused = denied.status == 403
        record("revocation", f"admin route after role removal #{attempt}", refused)
        assert refused, denied.describe()


# --- 4. audit labels cannot be reversed ------------------------------------------------------


def _audit_key(sec: Edge) -> str:
    key = str(
        sec.aws("secretsmanager").get_secret_value(SecretId=AUDIT_SECRET_NAME)["SecretString"]
    )
    REGISTRY.register(key, "audit label key")  # the whole-run log scan looks for it
    return key


def test_audit_labels_are_keyed_and_a_dictionary_does_not_reverse_them(sec: Edge) -> None:
    typed = f"Tr0ub4dor&3-typed-as-a-username-{fresh_source_ip()}"
    answer = sec.send(
        "POST",
        "/auth/login",
        json_body={"username": typed, "password": "wrong"},
        source_ip=fresh_source_ip(),
    )
    assert answer.status == 401
    logs = sec.stack.stdout.read_text(errors="replace") + sec.stack.logs()
    labels = set(re.findall(r'"user":\s*"([0-9a-f]{16})"', logs))
    labels |= set(re.findall(r'"source_ip_hash":\s*"([0-9a-f]{16})"', logs))
    assert labels
    # The attacker's dictionary: the unkeyed SHA-256 of every candidate, as the old labels were.
    candidate = username_rate_key(typed)
    assert hashlib.sha256(candidate.encode()).hexdigest()[:16] not in labels
    # With the deployment's key, the label is there: events still correlate.
    key = _audit_key(sec).encode()
    keyed = hmac.new(key, candidate.encode(), hashlib.sha256).hexdigest()[:16]
    assert keyed in labels
    assert key.decode() not in logs


# --- 5. the local stack's open doors --------------------------------------------------------


def _raw_get(port: int, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        raw = connection.getresponse()
        return raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/_dev/clock", "/me"])
def test_the_gateway_answers_loopback_host_names_only(sec: Edge, path: str) -> None:
    for host in ("attacker.example", "127.0.0.1.nip.io", "192.168.1.10"):
        status, _, _ = _raw_get(sec.port, path, {"Host": f"{host}:{sec.port}"})
        record("local_stack", f"Host {host} {path}", status == 403)
        assert status == 403, (host, path, status)
    status, _, _ = _raw_get(sec.port, "/.well-known/jwks.json", {"Host": f"localhost:{sec.port}"})
    assert status == 200


def test_another_origin_cannot_use_the_dev_routes(sec: Edge) -> None:
    before = sec.now()
    answer = sec.send(
        "POST", "/_dev/clock", json_body={"advance_seconds": 1}, headers={"Origin": SIBLING}
    )
    record("local_stack", "cross-origin POST /_dev/clock", answer.status == 403)
    assert answer.status == 403
    assert sec.now() - before < 1 + 30  # not moved (the wall clock runs on meanwhile)
    own = sec.send("GET", "/_dev/clock", headers={"Origin": f"http://127.0.0.1:{sec.port}"})
    assert own.status == 200


def test_the_aws_endpoint_answers_no_web_page_and_no_foreign_host(sec: Edge) -> None:
    port = int(sec.stack.env["AWS_PORT"])
    target = {
        "X-Amz-Target": "secretsmanager.ListSecrets",
        "Content-Type": "application/x-amz-json-1.1",
    }
    cases = {
        "a page's Origin": {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example"},
        "a preflight-less fetch": {"Host": f"127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
        "a rebound Host": {"Host": f"attacker.example:{port}"},
    }
    for case, headers in cases.items():
        status, answer_headers, body = _raw_get(port, "/", {**target, **headers})
        refused = status == 403 and "access-control-allow-origin" not in answer_headers
        record("local_stack", f"AWS endpoint: {case}", refused)
        assert refused, (case, status, answer_headers)
        assert b"SecretList" not in body
    assert sec.aws("secretsmanager").list_secrets()["SecretList"]  # the SDK still works


def test_the_access_log_prints_route_templates_not_ids(sec: Edge) -> None:
    login = sec.login(sec.new_account(prefix="round2"), device_id="desk")
    deleted = sec.send(
        "DELETE",
        f"/auth/sessions/{login.session_id}",
        bearer=login.access,
        cookies={FINGERPRINT_COOKIE: login.fingerprint},
        headers={"X-Device-Id": "desk"},
    )
    assert deleted.status == 204, deleted.describe()
    logs = sec.stack.stdout.read_text(errors="replace") + sec.stack.logs()
    assert '"DELETE /auth/sessions/{session_id}" 204' in logs
    assert login.session_id not in logs
    assert json.dumps(login.session_id) not in logs
