"""Security events: each one a structured log line with hashed identifiers and a Powertools
metric, and the template's alarms firing on what they watch.

Driven through the in-process handlers (functional stack, moto). Every ``security_event`` line
(``tokencore.audit``) and every authorizer deny line is checked for hashing: no raw user id,
session id, device id, source address or username, only 16-hex-digit ``*_hash`` labels (the
same id always hashes the same way, so events about one session still join).

The alarms are evaluated here the way CloudWatch would: each alarm's Metrics Insights query is
read from template.yaml, its parameters resolved with the values the functions run with
(POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_SERVICE_NAME), and applied to the EMF documents the
handlers printed: SUM of the metric over documents of that namespace and service, compared with
the alarm's threshold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from functions.authorizer import app as authorizer_app
from tests.functional.conftest import (
    USER_PASSWORD,
    Stack,
    load_event,
)
from tests.functional.test_http_edge import caller_placeholders, metrics_in, send
from tests.functional.test_template import REPO_ROOT
from tokencore.audit import hash_identifier
from tokencore.errors import StoreUnavailable
from tokencore.service import TokenGrant

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HEX16 = re.compile(r"[0-9a-f]{16}")
RAW_ID_FIELDS = ("user_id", "session_id", "device_id", "source_ip", "username")


class Events(logging.Handler):
    """Every record of tokencore.audit and of the functions' Powertools logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, name: str, **fields: object) -> list[dict[str, Any]]:
        found = []
        for record in self.records:
            if getattr(record, "security_event", None) != name:
                continue
            data = dict(record.__dict__)
            if all(data.get(key) == value for key, value in fields.items()):
                found.append(data)
        return found


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events()
    targets = [logging.getLogger("tokencore"), logging.getLogger(authorizer_app.logger.name)]
    levels = [target.level for target in targets]
    for target in targets:
        target.addHandler(handler)
    logging.getLogger("tokencore").setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for target, level in zip(targets, levels, strict=True):
            target.removeHandler(handler)
            target.setLevel(level)


def assert_hashed(event: dict[str, Any], *raw: str) -> None:
    """No raw identifier field and no raw value; every ``*_hash`` is a 16-hex label."""
    for name in RAW_ID_FIELDS:
        assert name not in event, f"{event['security_event']}: raw {name}"
    for name, value in event.items():
        if name.endswith("_hash"):
            assert HEX16.fullmatch(str(value)), (name, value)
    text = json.dumps(event, default=str)
    for value in raw:
        assert value not in text, f"{event['security_event']} carries a raw identifier"


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = metrics_in(capsys.readouterr().out)
    return documents


def count(documents: list[dict[str, Any]], name: str, **dimensions: str) -> float:
    total = 0.0
    for document in documents:
        if name in document and all(document.get(k) == v for k, v in dimensions.items()):
            value = document[name]
            total += sum(value) if isinstance(value, list) else value
    return total


def _refresh(grant: TokenGrant, token: str | None = None) -> Any:
    return send(
        "refresher/refresh-cookie.json",
        refresh_token=token or grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )


def _as(stack: Stack, grant: TokenGrant, relative: str, **extra: str) -> Any:
    placeholders = {**caller_placeholders(stack, grant), **extra}
    return send(relative, **placeholders)


# --- login ------------------------------------------------------------------------------------


def test_login_success_failure_and_rate_limits_are_events_and_metrics(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ip = "203.0.113.10"  # the events' source address
    ok = send("issuer/login-valid.json", password=USER_PASSWORD)
    assert ok.status == 200
    session_id = ok.json()["session_id"]
    assert send("issuer/login-wrong-password.json", password="not the password").status == 401
    stack.runtime.users.disable_user(stack.admin.user_id)
    disabled = load_event("issuer/login-valid.json", password="admin passphrase for tests only")
    disabled["body"] = disabled["body"].replace('"alice"', '"root"')
    from tests.functional.test_http_edge import invoke

    assert invoke("issuer", disabled).status == 401
    # The limits: the username's (10/300 in this stack), then the address's.
    stack.rewire(
        dataclasses.replace(
            stack.settings,
            login_rate_limit=dataclasses.replace(stack.settings.login_rate_limit, count=3),
        )
    )
    for _ in range(3):
        send("issuer/login-wrong-password.json", password="not the password")
    assert send("issuer/login-valid.json", password=USER_PASSWORD).status == 429
    documents = emitted(capsys)

    (succeeded,) = events.named("login_succeeded")
    assert_hashed(succeeded, "alice", session_id, ip, stack.user.user_id)
    assert HEX16.fullmatch(succeeded["user"])
    failed = events.named("login_failed")
    reasons = sorted(event["reason"] for event in failed)
    assert "user_disabled" in reasons
    assert "invalid_credentials" in reasons
    for event in failed:
        assert_hashed(event, "alice", "root", ip, "not the password")
    (limited, *_) = events.named("login_rate_limited")
    assert limited["scope"] == "login_user"
    assert_hashed(limited, "alice", ip)
    assert count(documents, "LoginSucceeded") == 1
    assert count(documents, "LoginFailed") >= 2
    assert count(documents, "RateLimited", scope="login_user") >= 1


def test_a_login_limited_by_address_names_its_scope(
    stack: Stack, events: Events, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.rewire(
        dataclasses.replace(
            stack.settings,
            login_ip_rate_limit=dataclasses.replace(stack.settings.login_ip_rate_limit, count=1),
        )
    )
    send("issuer/login-wrong-password.json", password="not the password")
    assert send("issuer/login-valid.json", password=USER_PASSWORD).status == 429
    (limited,) = events.named("login_rate_limited")
    assert limited["scope"] == "login_ip"
    assert count(emitted(capsys), "RateLimited", scope="login_ip") == 1


# --- refresh ------------------------------------------------------------------------------------


def test_refresh_reuse_is_an_event_with_its_class_and_metrics(
    stack: Stack, events: Events, capsys: pytest.CaptureFixture[str]
) -> None:
    # recent_previous: the previous token after the grace window.
    grant = stack.login()
    assert _refresh(grant).status == 200
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds + 1)
    assert _refresh(grant).status == 401
    # stale_lineage: a token two generations old.
    other = stack.login()
    second = _refresh(other).cookies["__Secure-rt"].value
    assert _refresh(other, second).status == 200
    assert _refresh(other).status == 401
    documents = emitted(capsys)
    classes = sorted(event["classification"] for event in events.named("refresh_reuse"))
    assert classes == ["recent_previous", "stale_lineage"]
    for event in events.named("refresh_reuse"):
        assert_hashed(event, grant.session_id, other.session_id, stack.user.user_id)
    assert count(documents, "RefreshReuse", classification="recent_previous") == 1
    assert count(documents, "RefreshReuse", classification="stale_lineage") == 1
    assert count(documents, "Revocation", reason="refresh_reuse") == 2


def test_a_refresh_limited_per_user_is_an_event_and_a_metric(
    stack: Stack, events: Events, capsys: pytest.CaptureFixture[str]
) -> None:
    grant = stack.login()
    token = grant.refresh_token
    for _ in range(stack.settings.refresh_rate_limit.count):
        answer = _refresh(grant, token)
        assert answer.status == 200
        token = answer.cookies["__Secure-rt"].value
    assert _refresh(grant, token).status == 429
    (limited,) = events.named("refresh_rate_limited")
    assert limited["scope"] == "refresh_user"
    assert_hashed(limited, "203.0.113.10")
    assert count(emitted(capsys), "RateLimited", scope="refresh_user") == 1


# --- every kind of revocation ---------------------------------------------------------------------


def test_every_kind_of_revocation_is_an_event(
    stack: Stack, events: Events, capsys: pytest.CaptureFixture[str]
) -> None:
    users = stack.runtime.users
    # logout
    grant = stack.login()
    assert (
        send("revoker/logout-cookie.json", refresh_token=grant.refresh_token, fingerprint="").status
        == 204
    )
    # the user ends one session from another; then revoke-all
    first, second = stack.login(), stack.login()
    assert (
        _as(
            stack, second, "revoker/sessions-delete.json", target_session_id=first.session_id
        ).status
        == 204
    )
    assert _as(stack, second, "revoker/revoke-all.json").status == 204
    # an admin revokes the user
    stack.login()
    admin = stack.login_admin()
    assert (
        _as(stack, admin, "revoker/admin-revoke.json", target_user_id=stack.user.user_id).status
        == 204
    )
    # a password change, and a session the index missed, refused at its next refresh
    late = stack.login()
    stack.clock.advance(1)
    users.change_password(stack.user.user_id, USER_PASSWORD)
    # the session cap evicts the oldest
    stack.rewire(dataclasses.replace(stack.settings, max_sessions_per_user=1))
    # One login per second: the cap orders sessions created within one second by their
    # random ids, so a login could otherwise evict its own new session.
    stack.clock.advance(1)
    stack.login()
    stack.clock.advance(1)
    stack.login()
    stack.clock.advance(1)
    # a session whose tokens could not be minted
    auth = stack.runtime.auth

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("injected")

    original = auth._grant
    auth._grant = broken  # type: ignore[method-assign]
    try:
        assert send("issuer/login-valid.json", password=USER_PASSWORD).status == 503
    finally:
        auth._grant = original  # type: ignore[method-assign]
    # disabling the user
    users.disable_user(stack.user.user_id)
    documents = emitted(capsys)

    single = {event["reason"] for event in events.named("session_revoked")}
    bulk = {event["reason"] for event in events.named("sessions_revoked")}
    assert {"logout", "user_revoked", "evicted", "issue_failed"} <= single, single
    assert {"revoke_all", "admin", "password_changed", "user_disabled"} <= bulk, bulk
    for event in events.named("session_revoked") + events.named("sessions_revoked"):
        assert_hashed(event, stack.user.user_id, grant.session_id, late.session_id)
    for reason in ("logout", "user_revoked", "revoke_all", "admin"):
        assert count(documents, "Revocation", reason=reason) >= 1, reason


def test_tokenctl_revokes_with_the_routes_flows_and_events(
    stack: Stack, events: Events, capsys: pytest.CaptureFixture[str]
) -> None:
    """revoke-session and revoke-user run the revoker's own flows (tokencore.sessionservice):
    the same records, the same security events, the user's marker first."""
    from tokencore import cli

    def tokenctl(*argv: str) -> dict[str, Any]:
        capsys.readouterr()  # the routes' metric documents so far
        assert cli.main(list(argv), clock=stack.clock) == 0
        answer: dict[str, Any] = json.loads(capsys.readouterr().out)
        return answer

    own, operated = stack.login(), stack.login()
    assert (
        _as(stack, own, "revoker/sessions-delete.json", target_session_id=own.session_id).status
        == 204
    )
    assert tokenctl("revoke-session", operated.session_id)["already_revoked"] is False
    by_route, by_cli = events.named("session_revoked")
    assert (by_route["reason"], by_cli["reason"]) == ("user_revoked", "admin")
    assert by_cli["session_id_hash"] == hash_identifier(operated.session_id)
    assert set(by_route) - {"reason", "user_id_hash"} == set(by_cli) - {"reason"}

    bulk = [stack.login() for _ in range(2)]
    admin = stack.login_admin()
    assert (
        _as(stack, admin, "revoker/admin-revoke.json", target_user_id=stack.user.user_id).status
        == 204
    )
    stack.clock.advance(1)
    late = stack.login()
    stack.clock.advance(1)
    assert tokenctl("revoke-user", "alice")["sessions_revoked"] == 1
    by_admin, by_operator = events.named("sessions_revoked", reason="admin")
    assert (by_admin["count"], by_operator["count"]) == (2, 1)
    assert (by_admin["actor"], by_operator["actor"]) == ("admin", "operator")
    assert by_admin["user_id_hash"] == by_operator["user_id_hash"]
    for event in (by_route, by_cli, by_admin, by_operator):
        assert_hashed(event, stack.user.user_id, operated.session_id, late.session_id)
    records = [
        stack.runtime.sessions.get_session(g.session_id, active_only=False) for g in (*bulk, late)
    ]
    assert all(record.status == "revoked" for record in records)
    # The marker too, as the admin route writes it: it outlives an index that missed a session.
    marker = stack.runtime.users.get_user(stack.user.user_id).sessions_revoked_at
    assert marker > records[-1].created_at


def test_a_session_that_predates_a_password_change_is_revoked_at_refresh_with_an_event(
    stack: Stack, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = stack.login()
    stack.clock.advance(1)
    # The index missed the session (eventually consistent): revoke_all finds nothing.
    monkeypatch.setattr(stack.runtime.sessions, "revoke_all", lambda *args, **kwargs: 0)
    stack.runtime.users.change_password(stack.user.user_id, USER_PASSWORD + "!")
    assert _refresh(grant).status == 401
    (event,) = events.named("session_revoked", reason="password_changed")
    assert_hashed(event, grant.session_id, stack.user.user_id)


# --- the authorizer -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Context:
    function_name: str = "tokencore-authorizer"
    aws_request_id: str = "5e0f8c1a-0000-4000-8000-000000000004"


def _authorize(grant: TokenGrant, **values: str) -> dict[str, Any]:
    event = load_event(
        "authorizer/http-sensitive-route.json",
        access_token=values.get("access_token", grant.access_token),
        fingerprint=values.get("fingerprint", grant.fingerprint or ""),
        device_id="",
    )
    result: dict[str, Any] = authorizer_app.lambda_handler(event, Context())
    return result


def test_authorizer_denies_are_events_by_reason_and_faults_are_counted_apart(
    stack: Stack,
    events: Events,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grant = stack.login()
    assert _authorize(grant)["isAuthorized"] is True
    assert _authorize(grant, access_token=grant.access_token + "x")["isAuthorized"] is False
    assert _authorize(grant, fingerprint="B" * 43)["isAuthorized"] is False
    assert _authorize(grant, access_token=grant.refresh_token)["isAuthorized"] is False

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("injected")

    monkeypatch.setattr(stack.runtime.session_reader, "read", unavailable)
    assert _authorize(grant)["isAuthorized"] is False
    documents = emitted(capsys)

    denied = events.named("authorizer_denied")
    reasons = {event["reason"] for event in denied}
    assert {"malformed_token", "fingerprint_mismatch", "store_unavailable"} <= reasons, reasons
    for event in denied:
        assert_hashed(event, grant.session_id, grant.access_token, grant.fingerprint or "-")
    assert count(documents, "AuthorizerDeny", reason="fingerprint_mismatch") == 1
    assert count(documents, "AuthorizerFault", reason="store_unavailable") == 1
    assert count(documents, "AuthorizerFault") == 1  # a bad token is not our fault


# --- the alarms -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    pass


def _tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_Loader.add_multi_constructor("!", _tagged)

_QUERY = re.compile(
    r"SELECT SUM\((?P<metric>\w+)\) "
    r'FROM "(?P<namespace>[^"]+)" '
    r"WHERE service = '(?P<service>[^']+)'"
    r"(?: AND reason = '(?P<reason>\w+)')?"
)


def alarms() -> dict[str, dict[str, Any]]:
    template = yaml.load((REPO_ROOT / "template.yaml").read_text(encoding="utf-8"), _Loader)  # noqa: S506
    found = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        if "Metrics" not in props:
            continue
        expression = props["Metrics"][0]["Expression"]
        query = expression if isinstance(expression, str) else expression[0]
        query = query.replace("${MetricsNamespace}", os.environ["POWERTOOLS_METRICS_NAMESPACE"])
        query = query.replace("${ServiceName}", os.environ["POWERTOOLS_SERVICE_NAME"])
        match = _QUERY.fullmatch(query.strip())
        assert match, query
        threshold = props["Threshold"]
        if isinstance(threshold, str) and threshold in template["Parameters"]:
            threshold = template["Parameters"][threshold]["Default"]  # a !Ref: its default
        found[name] = {**match.groupdict(), "threshold": float(threshold)}
    return found


def fires(alarm: dict[str, Any], documents: list[dict[str, Any]]) -> bool:
    """The alarm's query over these EMF documents, against its threshold (GreaterThan)."""
    total = 0.0
    for document in documents:
        meta = document["_aws"]["CloudWatchMetrics"][0]
        if meta["Namespace"] != alarm["namespace"] or document.get("service") != alarm["service"]:
            continue
        if alarm.get("reason") is not None and document.get("reason") != alarm["reason"]:
            continue
        value = document.get(alarm["metric"], 0)
        total += sum(value) if isinstance(value, list) else value
    return bool(total > alarm["threshold"])


def test_the_alarms_fire_on_refresh_reuse_and_on_authorizer_faults_and_not_otherwise(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    found = alarms()
    assert {"RefreshReuseAlarm", "AuthorizerFaultAlarm"} <= set(found)
    reuse, fault = found["RefreshReuseAlarm"], found["AuthorizerFaultAlarm"]
    # Ordinary traffic: logins, refreshes, allows and plain denies fire neither.
    grant = stack.login()
    assert _refresh(grant).status == 200
    assert _authorize(grant)["isAuthorized"] is True
    assert _authorize(grant, access_token="x.y.z")["isAuthorized"] is False
    quiet = emitted(capsys)
    assert quiet, "the handlers printed no metrics"
    assert not fires(reuse, quiet)
    assert not fires(fault, quiet)
    # One replayed refresh token fires the reuse alarm.
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds + 1)
    assert _refresh(grant).status == 401
    assert fires(reuse, emitted(capsys))
    # One authorizer fault (the session store down on a sensitive route) fires the fault alarm.
    other = stack.login()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("injected")

    monkeypatch.setattr(stack.runtime.session_reader, "read", unavailable)
    assert _authorize(other)["isAuthorized"] is False
    assert fires(fault, emitted(capsys))
