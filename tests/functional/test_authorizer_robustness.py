"""The authorizer under failure and hostile input: store and key faults, configuration errors,
bugs, garbage events, arbitrary headers. The contract in every case: the answer is a deny (HTTP
``isAuthorized: false``, a REST policy with no Allow for the request) or REST's exact
``Exception("Unauthorized")``; never an allow, never another exception. Also: the fast path
never imports boto3 (in a fresh interpreter), and no token, fingerprint or session id ever
reaches a log line or a metric.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    DENY_ALL_RESPONSE,
    APIGatewayAuthorizerResponse,
    HttpVerb,
)
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.authorizer import app
from tests.awsspy import AwsCall, intercept_aws_calls
from tests.functional.conftest import STACK_ENV, Stack, load_event
from tests.functional.test_authorizer import (
    FakeContext,
    assert_unauthorized,
    deny_reasons,
    event,
    invoke,
    is_allowed,
    mint,
)
from tokencore.authz import Authorizer, Grant
from tokencore.config import RoutePattern
from tokencore.errors import KeyUnavailable
from tokencore.keys import jwks_document
from tokencore.keys.model import VerificationKey
from tokencore.paths import read_path, template_segments
from tokencore.policy import segments_match
from tokencore.runtime import set_runtime
from tokencore.service import TokenGrant

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def alice(authz: Stack) -> TokenGrant:
    """One login per test function (hypothesis reuses it across examples)."""
    return authz.login()


def assert_never_allows(evt: object) -> None:
    """The property every failure must satisfy."""
    raised: Exception | None = None
    try:
        response = app.lambda_handler(evt, FakeContext())
    except Exception as exc:
        raised = exc
    if raised is not None:
        assert type(raised) is Exception
        assert raised.args == ("Unauthorized",)
        return
    assert isinstance(response, dict)
    if "isAuthorized" in response:
        assert response == {"isAuthorized": False}
        return
    statements = response["policyDocument"]["Statement"]
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Deny"
    assert "context" not in response


DENY_ALL = {
    "principalId": "deny-all-user",
    "policyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ["*"]}],
    },
}


def test_the_authorizers_literals_are_powertools_shapes() -> None:
    # The authorizer spells these out so that an HTTP API cold start never imports Powertools'
    # data classes; they must stay what Powertools would build.
    assert app._deny_all() == DENY_ALL_RESPONSE == DENY_ALL
    assert app._deny_all() is not app._deny_all()
    assert frozenset(verb.value for verb in HttpVerb if verb is not HttpVerb.ALL) == app._VERBS


# --- faults -------------------------------------------------------------------------------------


@dataclass
class Throttle:
    """Once ``on``, every DynamoDB GetItem fails as throttled (after its retries), as during a
    capacity incident. Other calls pass through."""

    enabled: bool = False
    attempts: list[str] = field(default_factory=list)

    def on(self) -> None:
        self.enabled = True


@pytest.fixture
def throttled_session_check(monkeypatch: pytest.MonkeyPatch) -> Throttle:
    throttle = Throttle()
    original = BaseClient._make_api_call

    def call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if throttle.enabled and operation == "BatchGetItem":
            throttle.attempts.append(operation)
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError(error, operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return throttle


def test_store_fault_on_a_sensitive_route_denies(
    authz: Stack, throttled_session_check: Throttle, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    token = mint(authz, grant)
    throttled_session_check.on()
    assert invoke(event("http-sensitive-route", grant)) == {"isAuthorized": False}
    # REST: an explicit Deny (403), not 401: the token is fine and a retry may succeed.
    assert invoke(event("rest-request-sensitive-route", grant)) == DENY_ALL
    assert invoke(event("rest-token-sensitive-route", grant, access_token=token)) == DENY_ALL
    assert throttled_session_check.attempts == ["BatchGetItem"] * 3
    assert deny_reasons(capsys) == ["store_unavailable"] * 3


def test_store_fault_does_not_touch_the_fast_path(
    authz: Stack, throttled_session_check: Throttle
) -> None:
    grant = authz.login()
    throttled_session_check.on()
    assert invoke(event("http-valid", grant))["isAuthorized"] is True
    assert throttled_session_check.attempts == []


class _FailingKeys:
    def get(self, kid: str) -> VerificationKey:
        raise KeyUnavailable("verification keys could not be loaded")


def test_key_unavailable_denies(authz: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    authz.rewire(access_keys=_FailingKeys())
    grant = authz.login()
    assert invoke(event("http-valid", grant)) == {"isAuthorized": False}
    assert invoke(event("rest-request-valid", grant)) == DENY_ALL
    assert deny_reasons(capsys) == ["key_unavailable"] * 2


def test_key_source_outage_on_a_cold_ring_denies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def ssm_down(call: AwsCall) -> Any:
        if call.operation == "GetParameter":
            if call.stdlib:
                raise call.refuse("InternalServerError")
            raise ClientError({"Error": {"Code": "InternalServerError"}}, call.operation)
        return call.proceed()

    grant = stack.login()
    intercept_aws_calls(monkeypatch, ssm_down)
    assert invoke(event("http-valid", grant)) == {"isAuthorized": False}
    assert invoke(event("rest-request-valid", grant)) == DENY_ALL
    assert set(deny_reasons(capsys)) == {"key_unavailable"}


def test_invalid_configuration_denies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No runtime yet and a bad setting: building the Runtime fails with ConfigError.
    set_runtime(None)
    monkeypatch.setenv("SESSION_CHECK_SAMPLE_RATE", "2")
    evt = load_event("authorizer/http-valid.json", access_token="x.y.z", fingerprint="f")
    assert invoke(evt) == {"isAuthorized": False}
    rest = load_event("authorizer/rest-request-valid.json", access_token="x.y.z", fingerprint="f")
    assert invoke(rest) == DENY_ALL
    assert deny_reasons(capsys) == ["invalid_config"] * 2


def test_a_bug_denies_and_is_reported_without_details(
    authz: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = authz.login()
    secret_looking = grant.access_token

    def broken(self: Authorizer, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom with input {secret_looking}")

    monkeypatch.setattr(Authorizer, "authorize", broken)
    records = _capture_powertools_logs()
    try:
        assert invoke(event("http-valid", grant)) == {"isAuthorized": False}
        assert invoke(event("rest-request-valid", grant)) == DENY_ALL
        token = mint(authz, grant)
        assert invoke(event("rest-token-valid", grant, access_token=token)) == DENY_ALL
    finally:
        lines = records.stop()
    assert deny_reasons(capsys) == ["internal_error"] * 3
    errors = [json.loads(line) for line in lines if '"internal_error"' in line]
    assert len(errors) == 3
    assert errors[0]["level"] == "ERROR"
    assert errors[0]["where"].startswith("RuntimeError at test_authorizer_robustness.py:")
    assert all(secret_looking not in line for line in lines)


def test_a_response_that_cannot_be_built_denies(
    authz: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = authz.login()

    def cannot(self: object) -> dict[str, Any]:
        raise ValueError("no statements")

    # The HTTP API answer is a dict literal around the context; the REST one is Powertools'.
    with monkeypatch.context() as patched:
        patched.setattr(Grant, "flat_context", cannot)
        assert invoke(event("http-valid", grant)) == {"isAuthorized": False}
    monkeypatch.setattr(APIGatewayAuthorizerResponse, "asdict", cannot)
    assert invoke(event("rest-request-valid", grant)) == DENY_ALL


def test_metrics_and_logging_failures_never_change_an_answer(
    authz: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = authz.login()

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("metrics backend exploded")

    monkeypatch.setattr(app.metrics, "flush_metrics", fails)
    monkeypatch.setattr(app.logger, "debug", fails)
    monkeypatch.setattr(app.logger, "info", fails)
    assert invoke(event("http-valid", grant))["isAuthorized"] is True
    assert invoke(event("http-no-fingerprint", grant)) == {"isAuthorized": False}
    assert_unauthorized(event("rest-request-no-fingerprint", grant))


# --- garbage ------------------------------------------------------------------------------------

HUGE = "A" * 1_000_000
GARBAGE_EVENTS: list[object] = [
    None,
    [],
    "Bearer x",
    42,
    {},
    {"version": "2.0"},
    {"type": "TOKEN"},
    {"type": "REQUEST"},
    {"type": "WEBSOCKET", "methodArn": "arn"},
    {"version": 2.0, "type": "REQUEST"},
    {"version": "2.0", "headers": [], "rawPath": "/me"},
    {"version": "2.0", "headers": {"authorization": HUGE}, "rawPath": "/me"},
    {"version": "2.0", "headers": {"authorization": ["Bearer a"]}, "rawPath": "/me"},
    {"version": "2.0", "headers": {"authorization": "Bearer a.b.c"}, "requestContext": "x"},
    {"version": "2.0", "headers": None, "rawPath": None, "requestContext": {"http": None}},
    {"type": "TOKEN", "authorizationToken": HUGE, "methodArn": HUGE},
    {"type": "TOKEN", "authorizationToken": "Bearer a.b.c", "methodArn": 7},
    {"type": "TOKEN", "authorizationToken": None, "methodArn": "arn:aws:execute-api:x"},
    {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:a/b/GET/me"},
    {"type": "REQUEST", "headers": "Authorization: Bearer x", "httpMethod": "GET"},
]


@pytest.mark.parametrize("evt", GARBAGE_EVENTS, ids=range(len(GARBAGE_EVENTS)))
def test_garbage_events_are_denied(evt: object, authz: Stack) -> None:
    assert_never_allows(evt)


def test_garbage_around_a_valid_token_is_denied(authz: Stack) -> None:
    grant = authz.login()
    breakages: list[tuple[str, str, object]] = [
        ("http-valid", "rawPath", None),
        ("http-valid", "rawPath", "me"),
        ("http-valid", "rawPath", "/" + "a" * 9000),
        ("http-valid", "requestContext", None),
        ("http-valid", "headers", "authorization"),
        ("http-valid", "routeKey", "GET me"),
        ("rest-request-valid", "methodArn", "arn:aws:execute-api:us-east-1:123:api/prod/GET/me"),
        ("rest-request-valid", "methodArn", None),
        ("rest-request-valid", "httpMethod", "POST"),  # disagrees with the method ARN
        ("rest-request-valid", "headers", ["Authorization"]),
        ("rest-request-valid", "path", 7),
        ("rest-token-valid", "methodArn", "arn:aws:execute-api:us-east-1:123456789012:a/p/GOT/me"),
    ]
    for name, key, value in breakages:
        evt = event(name, grant, access_token=mint(authz, grant, fingerprint=grant.fingerprint))
        evt[key] = value
        assert_never_allows(evt)


def test_cookie_and_device_garbage_is_harmless(authz: Stack) -> None:
    grant = authz.login(device_id="laptop-7f3a")
    garbage_cookies: list[object] = [None, "x", [1, None, {}], ["__Host-fgp"] * 500, [HUGE]]
    for cookies in garbage_cookies:
        evt = event("http-sensitive-route", grant, device_id="laptop-7f3a")
        evt["cookies"] = cookies
        assert_never_allows(evt)
    for device in (None, 7, ["laptop-7f3a", "laptop-7f3a"], HUGE):
        evt = event("http-sensitive-route", grant)
        evt["headers"]["x-device-id"] = device
        assert_never_allows(evt)
    evt = event("rest-request-valid", grant)
    evt["headers"]["Cookie"] = HUGE
    assert_never_allows(evt)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
EVENT_KEYS = st.sampled_from(
    [
        "version",
        "type",
        "headers",
        "multiValueHeaders",
        "cookies",
        "rawPath",
        "routeKey",
        "requestContext",
        "methodArn",
        "authorizationToken",
        "httpMethod",
        "path",
        "resource",
    ]
)
EVENT_VALUES = (
    JSON
    | st.sampled_from(["2.0", "1.0", "TOKEN", "REQUEST", "/me", "/admin/x", "GET /me"])
    | st.builds(lambda s: "Bearer " + s, st.text(max_size=60))
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(evt=st.dictionaries(EVENT_KEYS, EVENT_VALUES, max_size=10) | JSON)
def test_property_arbitrary_events_never_allow(authz: Stack, evt: object) -> None:
    assert_never_allows(evt)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["http-valid", "rest-request-valid", "rest-token-valid"]),
    header=st.text(max_size=200) | st.builds(lambda s: "Bearer " + s, st.text(max_size=200)),
)
def test_property_arbitrary_authorization_headers_never_allow(
    authz: Stack, kind: str, header: str
) -> None:
    evt = load_event(f"authorizer/{kind}.json", fingerprint="f", device_id="")
    if kind == "http-valid":
        evt["headers"]["authorization"] = header
    elif kind == "rest-request-valid":
        evt["headers"]["Authorization"] = header
        evt["multiValueHeaders"]["Authorization"] = [header]
    else:
        evt["authorizationToken"] = header
    assert_never_allows(evt)


SEGMENTS = st.sampled_from(
    ["admin", "Admin", "admin ", "me", "users", "{user_id}", "{proxy+}", "", ".", "..", "%61dmin"]
) | st.text(alphabet="/.%\\adminsu{}+-_", max_size=8)
PATHS = st.lists(SEGMENTS, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw_path=PATHS, route_path=st.none() | PATHS)
def test_property_a_valid_non_admin_token_never_reaches_the_admin_tree(
    alice: TokenGrant, raw_path: str, route_path: str | None
) -> None:
    # Whatever path and route template arrive, a non-admin is allowed only where no reading of
    # the path (decoded once, twice, leniently, dots resolved...) and not the template lies
    # under /admin.
    evt = event("http-valid", alice)
    evt["rawPath"] = raw_path
    evt["routeKey"] = "$default" if route_path is None else f"GET {route_path}"
    response = invoke(evt)
    if response["isAuthorized"]:
        admin_tree = RoutePattern("*", "/admin/*")
        readings = read_path(raw_path)
        assert readings is not None
        for segments in (readings.canonical, *readings.alternates):
            assert not segments_match(admin_tree, "GET", segments)
        if route_path is not None:
            template = template_segments(route_path)
            assert template is not None
            assert not segments_match(admin_tree, "GET", template)


# --- the fast path in a fresh interpreter -------------------------------------------------------

_FAST_PATH_SCRIPT = """
import json, sys
from functions.authorizer import app
event = json.loads(sys.stdin.read())
answers = [app.lambda_handler(event, None) for _ in range(3)]
loaded = sorted(
    name for name in sys.modules
    if name == "boto3" or name.startswith(("boto3.", "botocore.client", "botocore.session"))
    # Powertools' REST shapes: an HTTP API authorizer never needs them.
    or name.startswith("aws_lambda_powertools.utilities.data_classes")
)
print(json.dumps({"answers": answers, "loaded": loaded}))
"""


class _EmptyRevocationList(http.server.BaseHTTPRequestHandler):
    """A DynamoDB endpoint whose revocation list is empty; records the operations asked."""

    targets: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _EmptyRevocationList.targets.append(self.headers.get("X-Amz-Target") or "")
        body = b'{"Responses": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_fast_path_never_imports_boto3(stack: Stack) -> None:
    # The subprocess runs on the wall clock: mint the token at the wall clock's time.
    stack.clock.set(time.time())
    grant = stack.login()
    evt = event("http-valid", grant)
    env = {
        **os.environ,
        **STACK_ENV,
        "PUBLIC_JWKS": json.dumps(jwks_document(stack.access_keys.verification_keys())),
        "SESSION_CHECK_SAMPLE_RATE": "0",
        # Nothing else may be reached: any other AWS call fails rather than leave the machine.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyRevocationList)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{server.server_address[1]}"
    _EmptyRevocationList.targets.clear()
    try:
        result = _run_fast_path(evt, env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [answer["isAuthorized"] for answer in report["answers"]] == [True] * 3
    assert report["loaded"] == []
    # The revocation list, once for three requests, by the standard library.
    assert _EmptyRevocationList.targets == ["DynamoDB_20120810.BatchGetItem"]


def _run_fast_path(evt: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FAST_PATH_SCRIPT],
        input=json.dumps(evt),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
        check=False,
    )


# --- no secrets in logs or metrics ----------------------------------------------------------


class _Lines(logging.Handler):
    """Collects the Powertools logger's rendered JSON lines, with its own formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(app.logger.registered_handler.formatter)
        self._level = app.logger.log_level
        app.logger.addHandler(self)
        app.logger.setLevel(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def stop(self) -> list[str]:
        logging.getLogger(app.logger.name).removeHandler(self)
        app.logger.setLevel(self._level)
        return self.lines


def _capture_powertools_logs() -> _Lines:
    return _Lines()


def test_no_token_fingerprint_or_session_id_is_ever_logged(
    authz: Stack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Our code's loggers at DEBUG (botocore's own DEBUG output quotes requests: never enable it).
    caplog.set_level(logging.DEBUG, logger="tokencore")
    grant = authz.login(device_id="laptop-7f3a")
    admin = authz.login_admin()
    unbound = mint(authz, grant)
    lines = _capture_powertools_logs()
    try:
        invoke(event("http-valid", grant))  # allow (logged at DEBUG here)
        invoke(event("http-sensitive-route", grant, device_id="laptop-7f3a"))  # session read
        invoke(event("http-sensitive-route", grant, device_id="phone"))  # device mismatch
        invoke(event("http-admin-route", grant))  # insufficient role
        invoke(event("http-admin-route", admin))  # admin allow
        invoke(event("http-valid", grant, fingerprint="wrong-fingerprint-value"))
        invoke(event("http-malformed-header", grant))
        invoke(event("rest-request-valid", grant))
        invoke(event("rest-token-valid", grant, access_token=unbound))
        for evt in (
            event("rest-request-no-fingerprint", grant),
            event("rest-token-valid", grant),  # bound token on a TOKEN authorizer
        ):
            with pytest.raises(Exception, match=r"^Unauthorized$"):
                invoke(evt)
        authz.runtime.sessions.revoke(grant.session_id, "logout")
        invoke(event("http-sensitive-route", grant, device_id="laptop-7f3a"))  # revoked
        authz.clock.advance(10_000)
        invoke(event("http-valid", grant))  # expired
    finally:
        rendered = lines.stop()
    assert len(rendered) >= 10
    out = capsys.readouterr()
    everything = "\n".join([*rendered, caplog.text, out.out, out.err])
    secrets = {
        "access token": grant.access_token,
        "admin access token": admin.access_token,
        "unbound access token": unbound,
        "refresh token": grant.refresh_token,
        "fingerprint": grant.fingerprint,
        "signature": grant.access_token.rsplit(".", 1)[1],
        "session id": grant.session_id,
        "device id": "laptop-7f3a",
    }
    for what, secret in secrets.items():
        assert secret, what
        assert secret not in everything, f"{what} leaked into logs or metrics"
    # What is logged instead: codes and a hash of the session id.
    denied = [json.loads(line) for line in rendered if "authorizer denied" in line]
    assert {entry["reason"] for entry in denied} >= {
        "device_mismatch",
        "insufficient_role",
        "fingerprint_mismatch",
        "malformed_authorization",
        "session_revoked",
        "expired_token",
    }
    assert all(len(entry.get("session_hash", "0" * 16)) == 16 for entry in denied)
    # Correlated with API Gateway's request id (HTTP events) and Lambda's.
    assert any(entry.get("correlation_id") == "Ab1Cd2Ef3Gh4=" for entry in denied)
    assert all(entry["function_request_id"] == FakeContext.aws_request_id for entry in denied)


def test_rest_refused_route_denies_exactly_that_route(authz: Stack) -> None:
    """A route refused to a valid token keeps the rest of the (cacheable) policy correct."""
    grant = authz.login()
    evt = event("rest-request-valid", grant)
    evt["path"], evt["resource"] = "/me/../admin/users/x/revoke", "/me"
    evt["methodArn"] = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/me/x"
    response = invoke(evt)
    assert not is_allowed(response, "GET", "/me/x")
    assert is_allowed(response, "GET", "/me")
    assert "context" not in response
