"""The HTTP edge across every function: headers on every response, CORS, no 500 ever, nothing
secret in the logs. Also home of the helpers the per-function tests import (invoking a handler
with a Lambda context, reading responses, cookies, metrics and log output)."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from functions.issuer import app as issuer_app
from functions.me import app as me_app
from functions.refresher import app as refresher_app
from functions.revoker import app as revoker_app
from tests.clock import ManualClock
from tests.functional.conftest import (
    EVENTS_DIR,
    STACK_ENV,
    USER_PASSWORD,
    Stack,
    fresh_aws,
    load_event,
)
from tokencore.config import Settings, reset_settings
from tokencore.errors import StoreUnavailable
from tokencore.http import FINGERPRINT_COOKIE, REFRESH_COOKIE, route_library_logs
from tokencore.runtime import Runtime, set_runtime
from tokencore.service import TokenGrant

# The metrics flush warns when an invocation counted nothing (GET /me, the key documents).
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HANDLERS: dict[str, ModuleType] = {
    "issuer": issuer_app,
    "refresher": refresher_app,
    "revoker": revoker_app,
    "me": me_app,
}
ALLOWED_ORIGIN = "https://app.example.com"
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
}


# --- helpers shared by the functional tests ----------------------------------------------------


@dataclass(frozen=True)
class LambdaContextStub:
    function_name: str = "tokencore-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tokencore-test"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: dict[str, str]  # lower-cased names; flags map to ""

    @classmethod
    def parse(cls, header: str) -> SetCookie:
        first, *rest = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        attributes = {}
        for item in rest:
            key, _, val = item.partition("=")
            attributes[key.lower()] = val
        return cls(name, value, attributes)

    @property
    def cleared(self) -> bool:
        return self.value == "" and self.attributes.get("max-age") == "0"


@dataclass(frozen=True)
class HttpResult:
    raw: dict[str, Any]

    @property
    def status(self) -> int:
        status: int = self.raw["statusCode"]
        return status

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in (self.raw.get("headers") or {}).items()}

    @property
    def body(self) -> str:
        return str(self.raw.get("body") or "")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def cookies(self) -> dict[str, SetCookie]:
        parsed = [SetCookie.parse(item) for item in self.raw.get("cookies") or []]
        return {cookie.name: cookie for cookie in parsed}

    def comparable(self) -> tuple[int, str, dict[str, str], list[str]]:
        """Everything a client sees (status, body, headers, set-cookies)."""
        return self.status, self.body, self.headers, sorted(self.raw.get("cookies") or [])


def invoke(function: str, event: dict[str, Any]) -> HttpResult:
    module = HANDLERS[function]
    result: dict[str, Any] = module.lambda_handler(event, LambdaContextStub())
    return HttpResult(result)


def send(relative: str, **placeholders: str) -> HttpResult:
    """Load events/<relative>, fill it, and run it through its own function."""
    return invoke(relative.split("/", 1)[0], load_event(relative, **placeholders))


def caller_placeholders(stack: Stack, grant: TokenGrant) -> dict[str, str]:
    """What the authorizer would have put in the context for this grant's access token."""
    claims = stack.runtime.auth.verify_access(grant.access_token)
    return {
        "user_id": claims.subject,
        "session_id": claims.session_id,
        "token_id": claims.token_id,
        "expires_at": str(claims.expires_at),
        "access_token": grant.access_token,
        "fingerprint": grant.fingerprint or "",
    }


def metrics_in(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents printed by the Metrics flush and single_metric."""
    documents = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def metric_values(stdout: str, name: str, **dimensions: str) -> list[float]:
    values: list[float] = []
    for document in metrics_in(stdout):
        if name in document and all(document.get(k) == v for k, v in dimensions.items()):
            value = document[name]
            values.extend(value if isinstance(value, list) else [value])
    return values


def security_events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.getMessage() == "security_event"
        and getattr(record, "security_event", None) == name
    ]


def assert_security_headers(result: HttpResult) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert result.headers.get(name) == value, name


def assert_no_store(result: HttpResult) -> None:
    assert result.headers.get("cache-control") == "no-store"
    assert result.headers.get("pragma") == "no-cache"


def assert_cookies_cleared(result: HttpResult) -> None:
    cookies = result.cookies
    for name, path in ((REFRESH_COOKIE, "/auth"), (FINGERPRINT_COOKIE, "/")):
        cookie = cookies[name]
        assert cookie.cleared, name
        assert cookie.attributes["path"] == path
        assert {"httponly", "secure"} <= set(cookie.attributes)
        assert cookie.attributes["samesite"] == "Strict"


def every_event_file(function: str) -> list[str]:
    return sorted(path.name for path in (EVENTS_DIR / function).glob("*.json"))


Scenario = Callable[[Stack], None]


def check_scenarios(function: str, name: str, scenarios: dict[str, Scenario], stack: Stack) -> None:
    """Run the scenario for events/<function>/<name>; an event file without one fails."""
    scenario = scenarios.get(name)
    assert scenario is not None, f"events/{function}/{name} has no test scenario"
    scenario(stack)


@pytest.fixture
def edge_runtime(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[Runtime]:
    """The stack's settings and a Runtime, without its table, keys or users: for requests the
    edge refuses before the core touches AWS (bodies, headers, the authorizer context). moto is
    active anyway, so a request that does reach AWS fails here instead of leaving the machine."""
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    with fresh_aws():
        runtime = Runtime(Settings.from_env(), clock)
        set_runtime(runtime)
        try:
            yield runtime
        finally:
            set_runtime(None)


class _CurrentStdout:
    """Writes to whatever sys.stdout is at write time (pytest swaps it between phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the functions' Powertools log handler at the stdout capsys captures (the handler
    keeps the stream it was created with, at import time)."""
    for module in HANDLERS.values():
        logger: Logger = module.logger
        # The handlers actually attached to the service's logger: a second Logger() for the
        # same service reuses the first one's handler, not its own ``registered_handler``.
        for handler in logging.getLogger(logger.service).handlers:
            if isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", _CurrentStdout())


# --- every event, every response ----------------------------------------------------------------

ALL_EVENTS = [f"{function}/{name}" for function in HANDLERS for name in every_event_file(function)]
GARBAGE = {
    "password": "not the password",
    "access_token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "refresh_token": "garbage.token.value",
    "fingerprint": "f" * 43,
    "user_id": "00000000-0000-4000-8000-000000000000",
    "session_id": "AAAAAAAAAAAAAAAAAAAAAA",
    "target_session_id": "BBBBBBBBBBBBBBBBBBBBBB",
    "target_user_id": "00000000-0000-4000-8000-000000000001",
    "token_id": "CCCCCCCCCCCCCCCCCCCCCC",
    "expires_at": "1800000900",
}


def test_the_event_directories_are_not_empty() -> None:
    for function in HANDLERS:
        assert every_event_file(function), function


@pytest.mark.parametrize("relative", ALL_EVENTS)
def test_no_event_answers_500_and_every_response_has_the_edge_headers(
    stack: Stack, relative: str
) -> None:
    # Placeholders filled with garbage, and left unfilled (what `sam local invoke` sends).
    for placeholders in (GARBAGE, {}):
        result = send(relative, **placeholders)
        assert result.status < 500 or result.status == 503
        assert result.status != 503 or "retry-after" in result.headers
        assert_security_headers(result)
        if relative.startswith("issuer/") and result.status == 200:
            # Only the key documents may be cached, and only publicly.
            assert result.headers["cache-control"].startswith("public, max-age=")
            assert "pragma" not in result.headers
        else:
            assert_no_store(result)
        if result.body:
            assert result.headers["content-type"] == "application/json"
            if result.status >= 400:
                assert set(result.json()) == {"error", "error_description"}


MALFORMED_EVENTS: list[dict[str, Any]] = [
    {},
    {"version": "2.0"},
    {"requestContext": "nope", "rawPath": 5},
    {"version": "2.0", "rawPath": "/me", "requestContext": {"http": {"method": "GET"}}},
    {
        "version": "2.0",
        "rawPath": "/auth/login",
        "body": 7,
        "headers": ["x"],
        "requestContext": {"http": {"method": "POST", "path": "/auth/login"}},
    },
]


@pytest.mark.parametrize("function", list(HANDLERS))
@pytest.mark.usefixtures("edge_runtime")
def test_a_malformed_event_never_answers_500(function: str) -> None:
    for event in MALFORMED_EVENTS:
        result = invoke(function, event)
        assert result.status in (400, 401, 404, 415, 503), event
        assert set(result.json()) == {"error", "error_description"}
        assert_security_headers(result)
        assert_no_store(result)


def test_a_configuration_error_is_a_503_with_retry_after(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh container whose environment is broken: Settings fail on the first request.
    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "fifteen minutes")
    set_runtime(None)
    reset_settings()
    for relative in (
        "issuer/login-valid.json",
        "issuer/jwks.json",
        "refresher/refresh-missing.json",
    ):
        result = send(relative, password=USER_PASSWORD)
        assert result.status == 503
        assert result.json()["error"] == "temporarily_unavailable"
        assert result.headers["retry-after"] == "1"
        assert "ACCESS_TOKEN" not in result.body
        assert_security_headers(result)
        assert_no_store(result)


def test_an_unexpected_exception_is_a_503_that_names_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(request: Any) -> Any:
        raise ValueError(f"invalid literal for int(): {request.password!r}")

    monkeypatch.setattr(stack.runtime.auth, "login", explode)
    with caplog.at_level(logging.DEBUG):
        result = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert result.status == 503
    assert result.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the service is temporarily unavailable; retry later",
    }
    # The log names the type and the frames, never the message (which echoed the password).
    assert any(r.getMessage() == "unhandled_error" for r in caplog.records)
    assert USER_PASSWORD not in caplog.text
    assert all(USER_PASSWORD not in str(r.__dict__) for r in caplog.records)


def test_a_store_fault_is_a_503_with_retry_after(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("throttled")

    monkeypatch.setattr(stack.runtime.auth, "login", unavailable)
    result = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert result.status == 503
    assert result.json()["error"] == "temporarily_unavailable"
    assert int(result.headers["retry-after"]) >= 1
    assert result.cookies == {}


@pytest.mark.usefixtures("edge_runtime")
def test_an_unknown_route_is_a_json_404() -> None:
    event = load_event("me/me.json", **GARBAGE)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    result = invoke("me", event)
    assert result.status == 404
    assert result.json() == {"error": "not_found", "error_description": "not found"}
    assert_security_headers(result)
    assert_no_store(result)


# --- CORS ----------------------------------------------------------------------------------------


def _with_origin(relative: str, origin: str | None, **placeholders: str) -> dict[str, Any]:
    event = load_event(relative, **placeholders)
    event["headers"].pop("origin", None)
    if origin is not None:
        event["headers"]["origin"] = origin
    return event


def test_an_allowed_origin_gets_credentialed_cors(stack: Stack) -> None:
    result = invoke(
        "issuer", _with_origin("issuer/login-valid.json", ALLOWED_ORIGIN, password=USER_PASSWORD)
    )
    assert result.status == 200
    assert result.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert result.headers["access-control-allow-credentials"] == "true"
    assert "X-Device-Id" in result.headers["access-control-allow-headers"]
    assert "Retry-After" in result.headers["access-control-expose-headers"]
    assert "Origin" in result.headers["vary"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://APP.example.com",
        "null",
        "*",
    ],
)
def test_an_unlisted_origin_gets_no_cors_headers(stack: Stack, origin: str) -> None:
    for relative, placeholders in (
        ("issuer/login-valid.json", {"password": USER_PASSWORD}),
        ("issuer/login-wrong-password.json", {"password": "wrong"}),
        ("refresher/refresh-missing.json", {}),
    ):
        result = invoke(relative.split("/")[0], _with_origin(relative, origin, **placeholders))
        assert not any(name.startswith("access-control-") for name in result.headers), relative


def test_no_origin_gets_no_cors_headers(stack: Stack) -> None:
    result = invoke("issuer", _with_origin("issuer/jwks.json", None))
    assert not any(name.startswith("access-control-") for name in result.headers)


def _preflight(origin: str) -> dict[str, Any]:
    event = load_event("issuer/login-valid.json", password="x")
    event["requestContext"]["http"]["method"] = "OPTIONS"
    event["routeKey"] = "OPTIONS /auth/login"
    event.pop("body")
    event["headers"] = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-device-id",
    }
    return event


@pytest.mark.usefixtures("edge_runtime")
def test_a_preflight_from_an_allowed_origin_is_answered() -> None:
    result = invoke("issuer", _preflight(ALLOWED_ORIGIN))
    assert result.status == 204
    assert result.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in result.headers["access-control-allow-methods"]
    assert result.headers["access-control-allow-credentials"] == "true"
    assert_security_headers(result)


@pytest.mark.usefixtures("edge_runtime")
def test_a_preflight_from_an_unlisted_origin_gets_no_cors_headers() -> None:
    result = invoke("issuer", _preflight("https://evil.example.com"))
    assert result.status < 500
    assert "access-control-allow-origin" not in result.headers


def test_an_empty_allow_list_means_no_cors_at_all(stack: Stack) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, allowed_origins=())
    result = invoke(
        "issuer", _with_origin("issuer/login-valid.json", ALLOWED_ORIGIN, password=USER_PASSWORD)
    )
    assert result.status == 200
    assert not any(name.startswith("access-control-") for name in result.headers)
    assert "vary" not in result.headers
    preflight = invoke("issuer", _preflight(ALLOWED_ORIGIN))
    assert preflight.status == 404
    assert "access-control-allow-origin" not in preflight.headers


def test_a_second_listed_origin_is_allowed(stack: Stack) -> None:
    second = "https://admin.example.com"
    stack.runtime.settings = dataclasses.replace(
        stack.settings, allowed_origins=(ALLOWED_ORIGIN, second)
    )
    result = invoke("issuer", _with_origin("issuer/jwks.json", second))
    assert result.headers["access-control-allow-origin"] == second


def test_route_library_logs_only_rewires_logging_inside_lambda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = logging.getLogger("tokencore")
    saved = (list(library.handlers), library.propagate, library.level)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    route_library_logs(issuer_app.logger)
    assert library.propagate  # tests (and the local stack) keep logging as it was
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "tokencore-issuer")
    try:
        route_library_logs(issuer_app.logger)
        assert library.handlers == logging.getLogger(issuer_app.logger.service).handlers
        assert not library.propagate
    finally:
        library.handlers, library.propagate = saved[0], saved[1]
        library.setLevel(saved[2])


# --- nothing secret reaches a log ---------------------------------------------------------------


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    levels = {name: module.logger.log_level for name, module in HANDLERS.items()}
    for module in HANDLERS.values():
        module.logger.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        yield
    for name, module in HANDLERS.items():
        module.logger.setLevel(levels[name])


@pytest.mark.usefixtures("log_output", "debug_logging")
def test_no_token_password_or_cookie_value_is_ever_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets: list[str] = [USER_PASSWORD, "wrong password for alice"]

    def remember(grant: TokenGrant) -> TokenGrant:
        secrets.extend([grant.access_token, grant.refresh_token, grant.fingerprint or ""])
        return grant

    login = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert login.status == 200
    access = login.json()["access_token"]
    refresh = login.cookies[REFRESH_COOKIE].value
    fingerprint = login.cookies[FINGERPRINT_COOKIE].value
    secrets += [access, refresh, fingerprint]
    send("issuer/login-wrong-password.json", password="wrong password for alice")
    send("issuer/login-wrong-content-type.json", password=USER_PASSWORD)

    rotated = send("refresher/refresh-cookie.json", refresh_token=refresh, fingerprint=fingerprint)
    assert rotated.status == 200
    secrets += [rotated.json()["access_token"], rotated.cookies[REFRESH_COOKIE].value]
    stack.clock.advance(60)
    reused = send("refresher/refresh-cookie.json", refresh_token=refresh, fingerprint=fingerprint)
    assert reused.status == 401

    other = remember(stack.login())
    placeholders = caller_placeholders(stack, other)
    assert send("me/me.json", **placeholders).status == 200
    assert send("revoker/sessions-list.json", **placeholders).status == 200
    assert send("revoker/logout-bearer.json", access_token=other.access_token).status == 204
    send("refresher/refresh-body.json", refresh_token=other.refresh_token, fingerprint="x")

    captured = capsys.readouterr()
    assert security_events(caplog, "refresh_reuse")
    # The access lines went through the Powertools logger, with the request's correlation id.
    access = [json.loads(line) for line in captured.out.splitlines() if '"request"' in line]
    assert access
    assert {line["correlation_id"] for line in access} == {"c6af9ac6-7b61-11e6-9a41-93e8deadbeef"}
    assert {"route", "method", "status"} <= set(access[0])
    assert "POST /auth/refresh" in {line["route"] for line in access}
    logged = [captured.out, captured.err, caplog.text]
    logged += [json.dumps(record.__dict__, default=str) for record in caplog.records]
    for secret in filter(None, secrets):
        for text in logged:
            assert secret not in text
    # The password's and tokens' distinctive parts never appear either (no partial echo).
    for text in logged:
        assert "horse battery" not in text
        assert "eyJ" not in text


def test_event_files_hold_no_secrets() -> None:
    for path in Path(EVENTS_DIR).glob("*/*.json"):
        if path.parent.name not in HANDLERS:
            continue
        text = path.read_text(encoding="utf-8")
        assert "eyJ" not in text, path  # no JWT
        assert USER_PASSWORD not in text, path
        event = json.loads(text)
        for cookie in event.get("cookies", []):
            assert cookie.split("=", 1)[1].startswith("{{"), path
        authorization = event.get("headers", {}).get("authorization")
        assert authorization in (None, "Bearer {{access_token}}"), path
