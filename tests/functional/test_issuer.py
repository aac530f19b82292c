"""The issuer: POST /auth/login and the key documents, driven by events/issuer/*.json."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from typing import Any

import pytest

from tests.functional.conftest import ISSUER, USER_PASSWORD, Stack, load_event
from tests.functional.test_http_edge import (
    ALLOWED_ORIGIN,
    Scenario,
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
from tokencore.errors import KeyUnavailable
from tokencore.http import FINGERPRINT_COOKIE, REFRESH_COOKIE
from tokencore.jose.codec import b64url_decode

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

LOGIN_KEYS = {"access_token", "token_type", "expires_in", "session_id"}


def _claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return payload


def _login_event(body: str | None, content_type: str | None = "application/json") -> dict[str, Any]:
    event = load_event("issuer/login-valid.json", password=USER_PASSWORD)
    event["headers"].pop("content-type", None)
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    if body is None:
        event.pop("body", None)
    else:
        event["body"] = body
    return event


def _credentials(username: str = "alice", password: str = USER_PASSWORD) -> str:
    return json.dumps({"username": username, "password": password})


# --- one scenario per event file -------------------------------------------------------------


def login_valid(stack: Stack) -> None:
    result = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert result.status == 200
    body = result.json()
    assert set(body) == LOGIN_KEYS  # cookie transport: no refresh token in the body
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == stack.settings.access_token_ttl_seconds
    claims = stack.runtime.auth.verify_access(body["access_token"])
    assert claims.subject == stack.user.user_id
    assert claims.session_id == body["session_id"]
    assert_no_store(result)
    assert_security_headers(result)
    assert result.headers["access-control-allow-origin"] == ALLOWED_ORIGIN

    refresh = result.cookies[REFRESH_COOKIE]
    assert refresh.value.count(".") == 2
    assert refresh.attributes == {
        "path": "/auth",
        "max-age": str(stack.settings.refresh_token_ttl_seconds),
        "httponly": "",
        "secure": "",
        "samesite": "Strict",
    }
    fingerprint = result.cookies[FINGERPRINT_COOKIE]
    assert fingerprint.attributes == {
        "path": "/",
        "max-age": str(stack.settings.refresh_token_ttl_seconds),
        "httponly": "",
        "secure": "",
        "samesite": "Strict",
    }
    assert "domain" not in fingerprint.attributes  # __Host- forbids it
    # The access token is bound to exactly this fingerprint cookie.
    assert claims.fingerprint_hash is not None
    session = stack.runtime.sessions.get_session(body["session_id"])
    assert session.device_id == "laptop-7f3a"
    assert session.source_ip == "203.0.113.10"
    assert session.user_agent is not None
    assert "tokencore-example" in session.user_agent


def login_wrong_password(stack: Stack) -> None:
    result = send("issuer/login-wrong-password.json", password="not alice's password")
    assert result.status == 401
    assert result.json() == {
        "error": "invalid_grant",
        "error_description": "invalid username or password",
    }
    assert result.headers["www-authenticate"] == 'Bearer realm="tokencore"'
    assert result.cookies == {}
    assert_no_store(result)


def login_malformed_body(stack: Stack) -> None:
    result = send("issuer/login-malformed-body.json")
    assert result.status == 400
    assert result.json()["error"] == "invalid_request"
    assert result.cookies == {}


def login_wrong_content_type(stack: Stack) -> None:
    result = send("issuer/login-wrong-content-type.json", password=USER_PASSWORD)
    assert result.status == 415
    assert result.json() == {
        "error": "invalid_request",
        "error_description": "the request body must be application/json",
    }
    assert result.cookies == {}


def jwks(stack: Stack) -> None:
    result = send("issuer/jwks.json")
    assert result.status == 200
    document = result.json()
    assert [key["kid"] for key in document["keys"]] == [
        key.kid for key in stack.access_keys.verification_keys()
    ]
    for key in document["keys"]:
        assert key["use"] == "sig"
        assert key["alg"] == stack.settings.access_token_alg
        # Public members only: no private RSA/EC/OKP parameter, no symmetric key.
        assert not {"d", "p", "q", "dp", "dq", "qi", "k", "oth"} & set(key)
    assert result.headers["cache-control"] == "public, max-age=300"
    assert "pragma" not in result.headers
    assert_security_headers(result)


def openid_configuration(stack: Stack) -> None:
    result = send("issuer/openid-configuration.json")
    assert result.status == 200
    document = result.json()
    assert document["issuer"] == ISSUER
    assert document["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "token_endpoint" not in document
    assert "authorization_endpoint" not in document
    # The issuer is exactly the iss of the tokens it describes.
    grant = stack.login()
    assert _claims(grant.access_token)["iss"] == document["issuer"]
    assert result.headers["cache-control"].startswith("public, max-age=")


SCENARIOS: dict[str, Scenario] = {
    "login-valid.json": login_valid,
    "login-wrong-password.json": login_wrong_password,
    "login-malformed-body.json": login_malformed_body,
    "login-wrong-content-type.json": login_wrong_content_type,
    "jwks.json": jwks,
    "openid-configuration.json": openid_configuration,
}


@pytest.mark.parametrize("name", every_event_file("issuer"))
def test_event(stack: Stack, name: str) -> None:
    check_scenarios("issuer", name, SCENARIOS, stack)


# --- login -----------------------------------------------------------------------------------


def test_an_unknown_user_and_a_wrong_password_look_the_same(stack: Stack) -> None:
    wrong_password = invoke("issuer", _login_event(_credentials(password="wrong")))
    unknown_user = invoke("issuer", _login_event(_credentials(username="mallory")))
    unnormalizable = invoke("issuer", _login_event(_credentials(username="al\u200bice")))
    assert wrong_password.status == 401
    assert wrong_password.comparable() == unknown_user.comparable() == unnormalizable.comparable()


def test_login_counts_and_reports_failures(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert send("issuer/login-valid.json", password=USER_PASSWORD).status == 200
        assert send("issuer/login-wrong-password.json", password="nope").status == 401
    out = capsys.readouterr().out
    assert metric_values(out, "LoginSucceeded") == [1.0]
    assert metric_values(out, "LoginFailed") == [1.0]
    (event,) = security_events(caplog, "login_failed")
    assert len(event.__dict__["user"]) == 16  # a hash, not the name
    assert "alice" not in json.dumps(event.__dict__, default=str)


@pytest.fixture
def tight_login_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_RATE_LIMIT", "2/300")


def test_login_is_rate_limited_per_username(
    tight_login_limit: None,
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(2):
        assert send("issuer/login-wrong-password.json", password="nope").status == 401
    with caplog.at_level(logging.INFO):
        limited = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert limited.status == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 300
    assert limited.cookies == {}
    assert_no_store(limited)
    assert metric_values(capsys.readouterr().out, "RateLimited") == [1.0]
    assert security_events(caplog, "login_rate_limited")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("", 400),
        ("not json", 400),
        ("[]", 400),
        ('"alice"', 400),
        ("null", 400),
        ('{"username":"alice"}', 400),
        ('{"password":"x"}', 400),
        ('{"username":5,"password":"x"}', 400),
        ('{"username":"alice","password":["x"]}', 400),
        ('{"username":"alice","password":""}', 400),
        ('{"username":"","password":"x"}', 400),
        ('{"username":"alice","username":"root","password":"x"}', 400),
        ('{"username":"alice","password":NaN}', 400),
        ('{"username":"alice","password":"\\ud800"}', 400),
        ('{"username":"alice","password":"x","extra":' + "[" * 20 + "]" * 20 + "}", 400),
        ("[" * 5000 + "]" * 5000, 400),
        (json.dumps({"username": "alice", "password": "p" * 1025}), 400),
        (json.dumps({"username": "a" * 257, "password": "x"}), 400),
        (json.dumps({"username": "alice", "password": "x", "pad": "p" * 17000}), 413),
    ],
)
@pytest.mark.usefixtures("edge_runtime")
def test_malformed_login_bodies_are_invalid_requests(body: str, status: int) -> None:
    result = invoke("issuer", _login_event(body))
    assert result.status == status
    assert result.json()["error"] == "invalid_request"
    assert result.cookies == {}
    assert_no_store(result)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
@pytest.mark.usefixtures("edge_runtime")
def test_login_requires_a_json_content_type(content_type: str | None) -> None:
    result = invoke("issuer", _login_event(_credentials(), content_type))
    assert result.status == 415
    assert result.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;"]
)
def test_json_content_type_variants_are_accepted(stack: Stack, content_type: str) -> None:
    assert invoke("issuer", _login_event(_credentials(), content_type)).status == 200


def test_a_base64_encoded_body_is_accepted(stack: Stack) -> None:
    event = _login_event(base64.b64encode(_credentials().encode()).decode())
    event["isBase64Encoded"] = True
    assert invoke("issuer", event).status == 200


@pytest.mark.parametrize("encoded", ["%%%not-base64", base64.b64encode(b"\xff\xfe{}").decode()])
@pytest.mark.usefixtures("edge_runtime")
def test_a_bad_base64_or_utf8_body_is_an_invalid_request(encoded: str) -> None:
    event = _login_event(encoded)
    event["isBase64Encoded"] = True
    result = invoke("issuer", event)
    assert result.status == 400
    assert result.json()["error"] == "invalid_request"


@pytest.mark.parametrize("device_id", ["x" * 129, "tab\there", "caf\u00e9", " padded "])
@pytest.mark.usefixtures("edge_runtime")
def test_a_malformed_device_id_is_refused(device_id: str) -> None:
    event = _login_event(_credentials())
    event["headers"]["x-device-id"] = device_id
    result = invoke("issuer", event)
    assert result.status == 400
    assert result.json()["error"] == "invalid_request"


def test_login_without_a_device_id_works(stack: Stack) -> None:
    event = _login_event(_credentials())
    del event["headers"]["x-device-id"]
    result = invoke("issuer", event)
    assert result.status == 200
    session = stack.runtime.sessions.get_session(result.json()["session_id"])
    assert session.device_id is None


@pytest.fixture
def binding_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINGERPRINT_BINDING", "false")


def test_without_binding_there_is_no_fingerprint_cookie(binding_off: None, stack: Stack) -> None:
    result = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert result.status == 200
    assert set(result.cookies) == {REFRESH_COOKIE}
    assert stack.runtime.auth.verify_access(result.json()["access_token"]).fingerprint_hash is None


@pytest.mark.parametrize(
    ("transport", "in_body", "cookies"),
    [
        ("cookie", False, {REFRESH_COOKIE, FINGERPRINT_COOKIE}),
        ("body", True, {FINGERPRINT_COOKIE}),
        ("both", True, {REFRESH_COOKIE, FINGERPRINT_COOKIE}),
    ],
)
def test_the_refresh_token_travels_per_transport(
    stack: Stack, transport: Any, in_body: bool, cookies: set[str]
) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, refresh_token_transport=transport)
    result = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert result.status == 200
    body = result.json()
    assert ("refresh_token" in body) is in_body
    assert set(result.cookies) == cookies
    if in_body and REFRESH_COOKIE in result.cookies:
        assert result.cookies[REFRESH_COOKIE].value == body["refresh_token"]


# --- key documents ---------------------------------------------------------------------------


def test_the_jwks_max_age_never_exceeds_the_verifiers_cache_ttl(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, jwks_cache_ttl_seconds=60)
    result = send("issuer/jwks.json")
    assert result.headers["cache-control"] == "public, max-age=60"


def test_the_jwks_is_a_503_when_keys_cannot_be_loaded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> Any:
        raise KeyUnavailable("ssm throttled")

    monkeypatch.setattr(stack.runtime.jwks_endpoint_keys, "keys", unavailable)
    result = send("issuer/jwks.json")
    assert result.status == 503
    assert_no_store(result)  # an error is never cached publicly
