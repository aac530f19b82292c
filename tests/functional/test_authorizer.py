"""The Lambda authorizer driven by the events in events/authorizer/, against the moto stack.

Tokens are minted by the test (``stack.login()``, or ``mint`` for claims a login cannot produce)
and put into the events through ``{{placeholders}}``; expired, revoked and wrong-role cases are
made from the same files by moving the clock, revoking the session or using a non-admin.

Every AWS call is counted at ``BaseClient._make_api_call`` (a spy that delegates), so "the fast
path makes no AWS call" and "the sensitive path makes exactly one" are asserted directly.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from typing import Any

import pytest

from functions.authorizer import app
from tests.awsspy import record_aws_calls
from tests.functional.conftest import Stack, load_event
from tokencore.policy import Policy
from tokencore.runtime import get_runtime
from tokencore.service import TokenGrant
from tokencore.tokens import (
    AccessClaims,
    fingerprint_hash,
    mint_access_token,
    new_fingerprint,
    new_token_id,
)

ACCOUNT_API = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5"
REST_STAGE = f"{ACCOUNT_API}/prod"
KINDS = ("http", "rest_request", "rest_token")
VALID_EVENT = {
    "http": "http-valid",
    "rest_request": "rest-request-valid",
    "rest_token": "rest-token-valid",
}
SENSITIVE_EVENT = {
    "http": "http-sensitive-route",
    "rest_request": "rest-request-sensitive-route",
    "rest_token": "rest-token-sensitive-route",
}
ADMIN_EVENT = {
    "http": "http-admin-route",
    "rest_request": "rest-request-admin-route",
    "rest_token": "rest-token-admin-route",
}


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "tokencore-authorizer"
    aws_request_id: str = "5e0f8c1a-0000-4000-8000-000000000001"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS API call made while the test runs, as ``service:Operation``."""
    calls: list[str] = []
    record_aws_calls(monkeypatch, calls)
    return calls


def warm_revocation_list() -> None:
    """Fetch the container's revocation list now: it is read once per
    REVOCATION_PROPAGATION_SECONDS (the clock stands still here), never per request."""
    revocations = get_runtime().revocation_list
    if revocations is not None:
        revocations.standing("warm-up", "user-0", 0)


def set_sample_rate(stack: Stack, rate: float, seed: int = 7) -> None:
    """Install a Policy with this sample rate and a seeded sampler (before the first call)."""
    settings = replace(stack.runtime.settings, session_check_sample_rate=rate)
    stack.rewire(policy=Policy(settings, random.Random(seed)))


# --- helpers ------------------------------------------------------------------------------------


def mint(
    stack: Stack,
    grant: TokenGrant,
    *,
    subject: str | None = None,
    roles: tuple[str, ...] = ("user",),
    fingerprint: str | None = None,
    security_level: str | None = None,
) -> str:
    """An access token for ``grant``'s session with chosen claims, signed by the stack's key."""
    settings = stack.runtime.settings
    issued_at = int(stack.clock.now())
    claims = AccessClaims(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        subject=subject or stack.user.user_id,
        session_id=grant.session_id,
        token_id=new_token_id(),
        roles=tuple(roles),
        email="alice@example.com",
        issued_at=issued_at,
        expires_at=issued_at + settings.access_token_ttl_seconds,
        fingerprint_hash=fingerprint_hash(fingerprint) if fingerprint else None,
        security_level=security_level,
    )
    return mint_access_token(stack.runtime.access_signer, claims).token


def event(name: str, grant: TokenGrant, **values: str) -> dict[str, Any]:
    """events/authorizer/<name>.json filled with ``grant``'s values (and overrides)."""
    filled = {
        "access_token": grant.access_token,
        "fingerprint": grant.fingerprint or "",
        "session_id": grant.session_id,
        "device_id": "",
    }
    filled.update(values)
    return load_event(f"authorizer/{name}.json", **filled)


def kind_event(
    kind: str, names: dict[str, str], stack: Stack, grant: TokenGrant, **values: str
) -> dict[str, Any]:
    """The event of ``kind``; a REST TOKEN authorizer sees no cookie, so its token is minted
    without a fingerprint (a bound token is refused there, see the test below)."""
    if kind == "rest_token" and "access_token" not in values:
        values["access_token"] = mint(stack, grant, roles=stack.user.roles)
    return event(names[kind], grant, **values)


def invoke(evt: object) -> dict[str, Any]:
    return app.lambda_handler(evt, FakeContext())


def assert_unauthorized(evt: object) -> None:
    """REST: exactly ``Exception("Unauthorized")``, which API Gateway maps to 401."""
    with pytest.raises(Exception) as info:
        invoke(evt)
    assert type(info.value) is Exception
    assert info.value.args == ("Unauthorized",)


def is_allowed(response: dict[str, Any], method: str, path: str, stage: str = REST_STAGE) -> bool:
    """IAM evaluation of an authorizer policy for one method ARN: an explicit Deny wins, then an
    Allow, otherwise the implicit deny. ``*`` matches any run of characters, ``/`` included."""
    arn = f"{stage}/{method}{path}"
    effects = set()
    for statement in response["policyDocument"]["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            pattern = "".join(".*" if c == "*" else re.escape(c) for c in resource)
            if re.fullmatch(pattern, arn):
                effects.add(statement["Effect"])
    return "Deny" not in effects and "Allow" in effects


def assert_denied(kind: str, evt: dict[str, Any]) -> None:
    """The deny for a bad token, binding or session: REST 401, HTTP isAuthorized false."""
    if kind == "http":
        assert invoke(evt) == {"isAuthorized": False}
    else:
        assert_unauthorized(evt)


def assert_allowed(kind: str, evt: dict[str, Any]) -> dict[str, Any]:
    """The allow of ``kind``; returns the context."""
    response = invoke(evt)
    if kind == "http":
        assert response["isAuthorized"] is True
    else:
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    context: dict[str, Any] = response["context"]
    return context


def emitted(capsys: pytest.CaptureFixture[str], name: str) -> list[dict[str, Any]]:
    """EMF documents printed since the last call that carry metric ``name``."""
    documents = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            if name in document:
                documents.append(document)
    return documents


def deny_reasons(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [document["reason"] for document in emitted(capsys, "AuthorizerDeny")]


# --- valid tokens -----------------------------------------------------------------------------


def test_http_valid_token_is_allowed_with_a_flat_context(authz: Stack) -> None:
    grant = authz.login()
    response = invoke(event("http-valid", grant))
    assert response == {
        "isAuthorized": True,
        "context": {
            "user_id": authz.user.user_id,
            "email": "alice@example.com",
            "roles": "user",
            "session_id": grant.session_id,
            "token_id": response["context"]["token_id"],
            "expires_at": int(authz.clock.now()) + 900,
            "session_checked": False,
        },
    }
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", response["context"]["token_id"])
    for value in response["context"].values():
        assert type(value) in (str, int, bool)  # flat: API Gateway refuses nested values


def test_admin_roles_are_comma_joined(authz: Stack) -> None:
    context = assert_allowed("http", event("http-valid", authz.login_admin()))
    assert sorted(context["roles"].split(",")) == ["admin", "user"]


def test_rest_request_valid_token_gets_a_cache_safe_policy(authz: Stack) -> None:
    grant = authz.login()
    response = invoke(event("rest-request-valid", grant))
    assert response["principalId"] == authz.user.user_id
    assert response["context"]["user_id"] == authz.user.user_id
    assert response["context"]["session_checked"] is False
    # The policy covers every route the caller may call, not only this one...
    assert f"{REST_STAGE}/*/*" in response["policyDocument"]["Statement"][0]["Resource"]
    for method, path in [("GET", "/me"), ("GET", "/auth/sessions"), ("DELETE", "/auth/s/x")]:
        assert is_allowed(response, method, path)
    # ...and, cached and replayed on another route, never opens the admin tree to a non-admin.
    for method, path in [("POST", "/admin/users/u1/revoke"), ("GET", "/admin"), ("PUT", "/admin/")]:
        assert not is_allowed(response, method, path)
    # Precise: an "admin" segment elsewhere in a path is not caught by the admin deny.
    assert is_allowed(response, "GET", "/reports/admin/summary")


def test_rest_policy_for_an_admin_has_no_admin_deny(authz: Stack) -> None:
    response = invoke(event("rest-request-valid", authz.login_admin()))
    assert [s["Effect"] for s in response["policyDocument"]["Statement"]] == ["Allow"]
    assert is_allowed(response, "POST", "/admin/users/u1/revoke")


def test_rest_token_valid_unbound_token_is_allowed(authz: Stack) -> None:
    grant = authz.login()
    response = invoke(event("rest-token-valid", grant, access_token=mint(authz, grant)))
    assert response["principalId"] == authz.user.user_id
    assert is_allowed(response, "GET", "/me")
    assert not is_allowed(response, "DELETE", "/admin/users/u1")
    assert response["context"]["session_id"] == grant.session_id


def test_rest_token_authorizer_refuses_a_fingerprint_bound_token(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # A TOKEN authorizer sees one header and no cookie: binding cannot be checked, so it fails
    # closed rather than accept a token that was stolen without its cookie.
    grant = authz.login()
    assert grant.fingerprint is not None
    assert_unauthorized(event("rest-token-valid", grant))
    assert deny_reasons(capsys) == ["fingerprint_unavailable"]


def test_bearer_scheme_is_case_insensitive(authz: Stack) -> None:
    grant = authz.login()
    evt = event("http-valid", grant)
    evt["headers"]["authorization"] = f"bEaReR {grant.access_token}"
    assert invoke(evt)["isAuthorized"] is True


def test_http_named_stage_is_stripped_from_the_raw_path(authz: Stack) -> None:
    assert_allowed("http", event("http-named-stage", authz.login()))


# --- bad tokens -------------------------------------------------------------------------------


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(payload) // 2
    flipped = "A" if payload[middle] != "A" else "B"
    return f"{header}.{payload[:middle]}{flipped}{payload[middle + 1 :]}.{signature}"


@pytest.mark.parametrize("kind", KINDS)
def test_expired_token_is_denied(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    evt = kind_event(kind, VALID_EVENT, authz, grant)
    authz.clock.advance(900 + 30)  # exp + leeway: expired at exactly that second
    assert_denied(kind, evt)
    assert deny_reasons(capsys) == ["expired_token"]


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_token_is_denied(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    token = mint(authz, grant) if kind == "rest_token" else grant.access_token
    assert_denied(kind, kind_event(kind, VALID_EVENT, authz, grant, access_token=_tamper(token)))
    assert deny_reasons(capsys) == ["invalid_signature"]


@pytest.mark.parametrize("kind", KINDS)
def test_refresh_token_is_not_a_bearer_token(kind: str, authz: Stack) -> None:
    grant = authz.login()
    assert_denied(
        kind, kind_event(kind, VALID_EVENT, authz, grant, access_token=grant.refresh_token)
    )


def test_missing_authorization_is_denied(authz: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    grant = authz.login()
    assert invoke(event("http-missing-header", grant)) == {"isAuthorized": False}
    assert_unauthorized(event("rest-token-missing-token", grant))
    rest = event("rest-request-valid", grant)
    del rest["headers"]["Authorization"], rest["multiValueHeaders"]["Authorization"]
    assert_unauthorized(rest)
    assert deny_reasons(capsys) == ["missing_token"] * 3


def test_malformed_header_event_is_denied(authz: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(event("http-malformed-header", authz.login())) == {"isAuthorized": False}
    assert deny_reasons(capsys) == ["malformed_authorization"]


MALFORMED_HEADERS = [
    "Basic {token}",
    "Bearer",
    "Bearer ",
    "{token}",
    "Bearer  {token}",
    " Bearer {token}",
    "Bearer {token} ",
    "Bearer\t{token}",
    "Bearer {token},Bearer {token}",
    "Bearer {token}\n",
    "Bearer {token}.extra",
    "Bearer " + "A" * 9000,
    "Bearer {token}Ω",
]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_authorization_is_denied(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    token = mint(authz, grant) if kind == "rest_token" else grant.access_token
    for template in MALFORMED_HEADERS:
        evt = kind_event(kind, VALID_EVENT, authz, grant, access_token=token)
        header = template.format(token=token)
        if kind == "http":
            evt["headers"]["authorization"] = header
        elif kind == "rest_request":
            evt["headers"]["Authorization"] = header
            evt["multiValueHeaders"]["Authorization"] = [header]
        else:
            evt["authorizationToken"] = header
        assert_denied(kind, evt)
    reasons = deny_reasons(capsys)
    assert len(reasons) == len(MALFORMED_HEADERS)
    # "Bearer <token>.extra" has the header's shape; the verifier refuses the token itself.
    assert set(reasons) == {"malformed_authorization", "malformed_token"}


def test_authorization_header_repeated_is_denied(authz: Stack) -> None:
    grant = authz.login()
    evt = event("rest-request-valid", grant)
    value = f"Bearer {grant.access_token}"
    evt["multiValueHeaders"]["Authorization"] = [value, value]
    assert_unauthorized(evt)
    evt = event("http-valid", grant)
    evt["headers"]["Authorization"] = value  # a second spelling of the same header
    assert invoke(evt) == {"isAuthorized": False}


# --- sessions: the hybrid design --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_session_is_denied_on_a_sensitive_route(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    evt = kind_event(kind, SENSITIVE_EVENT, authz, grant)
    assert_allowed(kind, evt)
    authz.runtime.sessions.revoke(grant.session_id, "logout")
    capsys.readouterr()
    assert_denied(kind, evt)
    assert deny_reasons(capsys) == ["session_revoked"]


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_session_is_denied_on_an_ordinary_route_within_the_propagation_bound(
    kind: str, authz: Stack, aws_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # With SESSION_CHECK_SAMPLE_RATE=0 an ordinary route reads no session; the revocation list
    # closes the gap: the copy fetched before the logout is trusted for
    # REVOCATION_PROPAGATION_SECONDS, and the first request after that refreshes it.
    grant = authz.login()
    evt = kind_event(kind, VALID_EVENT, authz, grant)
    warm_revocation_list()
    authz.runtime.sessions.revoke(grant.session_id, "logout")
    aws_calls.clear()
    assert assert_allowed(kind, evt)["session_checked"] is False  # the copy is still fresh
    assert aws_calls == []
    capsys.readouterr()
    propagation = authz.runtime.settings.revocation_propagation_seconds
    revocations = authz.runtime.revocation_list
    assert revocations is not None
    revocations.background = lambda job: job()  # the background refresh, run deterministically
    authz.clock.advance(propagation - 1)
    assert_allowed(kind, evt)
    assert aws_calls == []
    authz.clock.advance(1)
    assert_allowed(kind, evt)  # answered from the old copy; it starts the refresh
    assert_denied(kind, evt)  # bound: REVOCATION_PROPAGATION_SECONDS plus one request
    assert "session_listed" in deny_reasons(capsys)
    assert aws_calls == ["dynamodb:BatchGetItem"]


def test_a_revoke_all_marker_alone_denies_the_users_older_tokens_on_an_ordinary_route(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user's not-before entry, written with the marker, without the index pass: what
    # denies a session the eventually consistent index hid from revoke-all. A login in the
    # marker's own second passes (iat < floor(not_before) is the rule).
    older = authz.login()
    older_event = kind_event("http", VALID_EVENT, authz, older)
    authz.clock.advance(2.5)
    warm_revocation_list()
    authz.runtime.user_store.mark_sessions_revoked(authz.user.user_id, authz.clock.now())
    authz.clock.advance(0.1)  # the same whole second
    same_second = authz.login()
    same_second_event = kind_event("http", VALID_EVENT, authz, same_second)
    revocations = authz.runtime.revocation_list
    assert revocations is not None
    revocations.background = lambda job: job()
    authz.clock.advance(authz.runtime.settings.revocation_propagation_seconds)
    assert_allowed("http", older_event)  # answered from the old copy; it starts the refresh
    capsys.readouterr()
    assert_denied("http", older_event)
    assert deny_reasons(capsys) == ["user_listed"]
    assert_allowed("http", same_second_event)
    assert authz.runtime.sessions.get_session(older.session_id) is not None  # never revoked


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_session_is_denied_everywhere_when_every_request_is_sampled(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    set_sample_rate(authz, 1.0)
    grant = authz.login()
    evt = kind_event(kind, VALID_EVENT, authz, grant)
    assert assert_allowed(kind, evt)["session_checked"] is True
    authz.runtime.sessions.revoke(grant.session_id, "logout")
    capsys.readouterr()
    assert_denied(kind, evt)
    assert deny_reasons(capsys) == ["session_revoked"]


def test_expired_session_is_denied_on_a_sensitive_route(authz: Stack) -> None:
    grant = authz.login()
    # Past the session's idle expiry, but with a token minted just now (still valid itself).
    authz.clock.advance(authz.settings.refresh_token_ttl_seconds + 1)
    token = mint(authz, grant, fingerprint=grant.fingerprint)
    assert invoke(event("http-sensitive-route", grant, access_token=token)) == {
        "isAuthorized": False
    }


def test_unknown_session_is_denied_on_a_sensitive_route(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    forged = replace(grant, session_id="NoSuchSession0123456789")
    token = mint(authz, forged, fingerprint=grant.fingerprint)
    assert invoke(event("http-sensitive-route", grant, access_token=token)) == {
        "isAuthorized": False
    }
    assert deny_reasons(capsys) == ["session_not_found"]


def test_session_of_another_user_is_denied(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()  # alice's session, presented in a token for root
    token = mint(authz, grant, subject=authz.admin.user_id, fingerprint=grant.fingerprint)
    assert invoke(event("http-sensitive-route", grant, access_token=token)) == {
        "isAuthorized": False
    }
    assert deny_reasons(capsys) == ["session_user_mismatch"]


def test_high_security_token_always_checks_the_session(authz: Stack, aws_calls: list[str]) -> None:
    grant = authz.login()
    token = mint(authz, grant, fingerprint=grant.fingerprint, security_level="2")
    warm_revocation_list()
    aws_calls.clear()
    context = assert_allowed("http", event("http-valid", grant, access_token=token))
    assert context["session_checked"] is True
    assert aws_calls == ["dynamodb:BatchGetItem"]


def test_sampling_is_deterministic_with_a_seeded_sampler(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    set_sample_rate(authz, 0.3, seed=1234)
    expected_draws = random.Random(1234)
    grant = authz.login()
    evt = event("http-valid", grant)
    checked = [assert_allowed("http", evt)["session_checked"] for _ in range(40)]
    assert checked == [expected_draws.random() < 0.3 for _ in range(40)]
    assert 0 < sum(checked) < 40
    reasons = [document["reason"] for document in emitted(capsys, "SessionCheck")]
    assert reasons == ["sampled"] * sum(checked)


# --- roles --------------------------------------------------------------------------------------


def test_non_admin_on_admin_route_gets_an_explicit_deny(
    authz: Stack, aws_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    warm_revocation_list()
    aws_calls.clear()
    assert invoke(event("http-admin-route", grant)) == {"isAuthorized": False}
    for name in ("rest-request-admin-route", "rest-token-admin-route"):
        token = mint(authz, grant) if name.startswith("rest-token") else grant.access_token
        response = invoke(event(name, grant, access_token=token))
        # Explicit Deny (403) on this route; the rest of the policy stays right if cached.
        assert response["principalId"] == authz.user.user_id
        assert not is_allowed(response, "POST", "/admin/users/usr_target/revoke")
        assert is_allowed(response, "GET", "/me")
        assert "context" not in response
    assert aws_calls == []  # refused on roles before any session read
    assert deny_reasons(capsys) == ["insufficient_role"] * 3


@pytest.mark.parametrize("kind", KINDS)
def test_admin_on_admin_route_is_allowed_after_one_session_read(
    kind: str, authz: Stack, aws_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login_admin()
    token = mint(authz, grant, subject=authz.admin.user_id, roles=("admin", "user"))
    values = {"access_token": token} if kind == "rest_token" else {}
    evt = event(ADMIN_EVENT[kind], grant, **values)
    capsys.readouterr()
    warm_revocation_list()
    aws_calls.clear()
    context = assert_allowed(kind, evt)
    assert context["session_checked"] is True
    assert context["user_id"] == authz.admin.user_id
    assert aws_calls == ["dynamodb:BatchGetItem"]
    assert [d["reason"] for d in emitted(capsys, "SessionCheck")] == ["sensitive_route"]


def test_admin_route_behind_a_proxy_route_is_refused_to_a_non_admin(authz: Stack) -> None:
    assert invoke(event("http-proxy-admin-route", authz.login())) == {"isAuthorized": False}


def test_route_key_makes_the_decision_stricter(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # rawPath under a base-path mapping does not look like /admin, the matched route does.
    evt = event("http-admin-route", authz.login())
    evt["rawPath"] = "/v1/admin/users/usr_target/revoke"
    assert invoke(evt) == {"isAuthorized": False}
    assert deny_reasons(capsys) == ["insufficient_role"]


def test_paths_that_reach_the_admin_tree_another_way_are_refused(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # More cases, and the harmless encodings that are allowed: test_authorizer_paths.py.
    grant = authz.login()
    for raw_path in ("/me/../admin/users/x/revoke", "/%61dmin/users/x/revoke", "/me\\..\\admin"):
        evt = event("http-valid", grant)
        evt["rawPath"] = raw_path
        assert invoke(evt) == {"isAuthorized": False}
    assert deny_reasons(capsys) == ["ambiguous_path", "insufficient_role", "ambiguous_path"]


# --- binding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["http-no-fingerprint", "rest-request-no-fingerprint"])
def test_missing_fingerprint_cookie_is_denied(
    name: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_denied("http" if name.startswith("http") else "rest_request", event(name, authz.login()))
    assert deny_reasons(capsys) == ["fingerprint_mismatch"]


@pytest.mark.parametrize("kind", ["http", "rest_request"])
def test_wrong_fingerprint_cookie_is_denied(kind: str, authz: Stack) -> None:
    grant = authz.login()
    other, _ = new_fingerprint()
    assert_denied(kind, event(VALID_EVENT[kind], grant, fingerprint=other))


@pytest.mark.parametrize("kind", ["http", "rest_request"])
def test_right_fingerprint_cookie_is_allowed(kind: str, authz: Stack) -> None:
    assert_allowed(kind, event(VALID_EVENT[kind], authz.login()))


def test_repeated_fingerprint_cookie_is_denied(authz: Stack) -> None:
    grant = authz.login()
    evt = event("http-valid", grant)
    evt["cookies"].append(f"__Host-fgp={grant.fingerprint}")
    assert invoke(evt) == {"isAuthorized": False}


def test_http_cookie_header_is_read_when_the_cookies_field_is_absent(authz: Stack) -> None:
    grant = authz.login()
    evt = event("http-no-fingerprint", grant)
    del evt["cookies"]
    evt["headers"]["cookie"] = f"theme=dark; __Host-fgp={grant.fingerprint}"
    assert_allowed("http", evt)


def test_rest_cookie_header_split_in_pieces_is_read(authz: Stack) -> None:
    grant = authz.login()
    evt = event("rest-request-valid", grant)
    evt["multiValueHeaders"]["Cookie"] = ["theme=dark", f"__Host-fgp={grant.fingerprint}"]
    assert_allowed("rest_request", evt)


@pytest.mark.parametrize("kind", ["http", "rest_request"])
def test_device_bound_session_needs_its_device_on_sensitive_routes(
    kind: str, authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login(device_id="laptop-7f3a")
    assert_allowed(kind, event(SENSITIVE_EVENT[kind], grant, device_id="laptop-7f3a"))
    capsys.readouterr()
    assert_denied(kind, event(SENSITIVE_EVENT[kind], grant, device_id="phone-0001"))
    assert_denied(kind, event(SENSITIVE_EVENT[kind], grant, device_id=""))
    assert deny_reasons(capsys) == ["device_mismatch"] * 2
    # Ordinary routes do not read the session, so the device is not checked there.
    assert_allowed(kind, event(VALID_EVENT[kind], grant))


def test_device_binding_is_not_checked_on_a_sampled_read(authz: Stack) -> None:
    set_sample_rate(authz, 1.0)
    grant = authz.login(device_id="laptop-7f3a")
    assert assert_allowed("http", event("http-valid", grant))["session_checked"] is True


# --- cost -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_makes_no_aws_call(kind: str, authz: Stack, aws_calls: list[str]) -> None:
    evt = kind_event(kind, VALID_EVENT, authz, authz.login())
    warm_revocation_list()
    aws_calls.clear()
    for _ in range(3):
        assert_allowed(kind, evt)
    assert aws_calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_sensitive_path_makes_exactly_one_read(
    kind: str, authz: Stack, aws_calls: list[str]
) -> None:
    evt = kind_event(kind, SENSITIVE_EVENT, authz, authz.login())
    warm_revocation_list()
    aws_calls.clear()
    assert assert_allowed(kind, evt)["session_checked"] is True
    assert aws_calls == ["dynamodb:BatchGetItem"]


def test_a_cold_key_ring_reads_the_public_jwks_once(stack: Stack, aws_calls: list[str]) -> None:
    # Without PUBLIC_JWKS the first verification loads the public keys from SSM, then never
    # again until their TTL passes.
    evt = event("http-valid", stack.login())
    warm_revocation_list()
    aws_calls.clear()
    for _ in range(3):
        assert_allowed("http", evt)
    assert aws_calls == ["ssm:GetParameter"]


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_are_flushed_for_allow_and_deny(
    authz: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    capsys.readouterr()
    invoke(event("http-valid", grant))
    (allow,) = emitted(capsys, "AuthorizerAllow")
    assert allow["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert_unauthorized(event("rest-request-no-fingerprint", grant))
    (deny,) = emitted(capsys, "AuthorizerDeny")
    assert deny["reason"] == "fingerprint_mismatch"
    assert sorted(deny["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["reason", "service"]
    # The next allow does not inherit the deny's dimension.
    invoke(event("http-valid", grant))
    (allow,) = emitted(capsys, "AuthorizerAllow")
    assert "reason" not in allow
