"""Fault injection: every AWS call of login, refresh, revocation and a sensitive authorization
fails in turn, in every way AWS fails, and each time the outcome is closed and consistent.

How: the handlers run in-process (``functions/*/app.py`` with real API Gateway events) over
moto, and ``Injector`` sits at both client boundaries (``tests.awsspy``): botocore's
(``BaseClient._make_api_call``, what a ``before-call`` event hook sees, for every client the
Runtime creates, including the ones it creates lazily mid-operation) and the verifiers'
boto3-free key read (``AwsJsonClient.call``). A first run of the operation counts its calls;
then, for each position 1..N and each fault, the operation runs again with exactly that call
failing:

* ``throttling`` and ``access_denied``: the ClientError AWS returns (the service's own code);
* ``connection``: EndpointConnectionError, the request never left;
* ``lost_answer``: the request reached AWS and was applied, then ReadTimeoutError: the client
  cannot know the write happened (the case that makes half-written state possible).

Three key set-ups: ``warm`` (keys already cached: only DynamoDB calls remain), ``cold`` (a fresh
container: the keys are read from Secrets Manager / SSM during the operation) and ``kms`` (the
access key in KMS: every login and refresh signs with kms:Sign). Cold and KMS runs inject only
at the key calls; the warm runs cover every DynamoDB position.

The invariants, for every position and fault:

* the answer is 503 ``temporarily_unavailable`` with Retry-After and no Set-Cookie (the client
  keeps its cookies and retries), or the authorizer denies (never allows), or the step was a
  documented best-effort one and the operation succeeded consistently (the session cap);
* nothing is half-written: no usable session without its tokens (a session created for a
  failed login is revoked, or was never handed out), no session revoked by a failed write, a
  failed refresh never revokes (a fault is never reuse) and the same refresh token works on
  retry; a failed logout is retried and then revokes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from cryptography.hazmat.primitives import serialization
from moto import mock_aws

from functions.authorizer import app as authorizer_app
from tests.awsspy import AwsCall, intercept_aws_calls
from tests.clock import ManualClock
from tests.functional.conftest import (
    ADMIN_PASSWORD,
    CHEAP_HASHER,
    STACK_ENV,
    USER_PASSWORD,
    Stack,
    load_event,
)
from tests.functional.test_http_edge import HttpResult, caller_placeholders, invoke, send
from tests.security.tally import record
from tokencore.awshttp import AwsCallFailed
from tokencore.config import Settings, reset_settings
from tokencore.keys import KeySet, PrivateKeyEntry, generate_key, jwks_document
from tokencore.keys.jwk import verification_key_for
from tokencore.keys.model import KeyStatus
from tokencore.keys.secretsmanager import create_key_set_secret
from tokencore.runtime import Parts, Runtime, get_runtime, set_runtime
from tokencore.service import TokenGrant
from tokencore.sessions.base import STATUS_REVOKED
from tokencore.store.table import create_table

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

FAULTS = ("throttling", "access_denied", "connection", "lost_answer")
KEY_SERVICES = frozenset({"secretsmanager", "ssm", "kms"})
THROTTLING_CODES = {"dynamodb": "ProvisionedThroughputExceededException"}
# Limits out of the way: the same user logs in once per position and fault.
FAULT_ENV = {
    **STACK_ENV,
    "LOGIN_RATE_LIMIT": "100000/300",
    "LOGIN_IP_RATE_LIMIT": "100000/300",
    "REFRESH_RATE_LIMIT": "100000/60",
    "MAX_SESSIONS_PER_USER": "1000",
}


# --- the injector ---------------------------------------------------------------------------------


@dataclass
class Injector:
    """Counts every AWS call (``service:Operation``) and fails the ``position``-th one."""

    calls: list[str] = field(default_factory=list)
    position: int | None = None
    fault: str | None = None
    injected: str | None = None

    def arm(self, position: int | None, fault: str | None = None) -> None:
        self.calls = []
        self.position, self.fault, self.injected = position, fault, None

    def call(self, call: AwsCall) -> Any:
        self.calls.append(call.name)
        if self.position is None or len(self.calls) != self.position:
            return call.proceed()
        self.injected = call.name
        if self.fault == "lost_answer":
            # The request lands and is applied; its answer, whatever it was, is lost.
            with contextlib.suppress(ClientError, AwsCallFailed):
                call.proceed()
            if call.stdlib:
                raise AwsCallFailed("TimeoutError")
            raise ReadTimeoutError(endpoint_url=call.endpoint)
        if self.fault == "connection":
            if call.stdlib:
                raise AwsCallFailed("ConnectionRefusedError")
            raise EndpointConnectionError(endpoint_url=call.endpoint)
        code = (
            THROTTLING_CODES.get(call.service, "ThrottlingException")
            if self.fault == "throttling"
            else "AccessDeniedException"
        )
        if call.stdlib:
            raise call.refuse(code)
        error = {"Error": {"Code": code, "Message": f"injected {code}"}}
        raise ClientError(error, call.operation)


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Injector:
    found = Injector()
    intercept_aws_calls(monkeypatch, found.call)
    return found


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class World:
    stack: Stack
    kms: bool

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    def fresh_container(self) -> Runtime:
        """A new Runtime: its keys are read again on first use (a cold start). It shares the
        DynamoDB client (building one costs more than the whole operation under test)."""
        parts = Parts(
            dynamodb_client=self.stack.runtime.dynamodb_client, password_hasher=CHEAP_HASHER
        )
        runtime = Runtime(self.stack.settings, self.stack.clock, parts)
        set_runtime(runtime)
        return runtime

    def after_key_fault(self) -> None:
        """After a failed key read a container refuses to refetch for
        JWKS_REFETCH_MIN_INTERVAL_SECONDS (a key outage must not become a flood of reads): a
        retry succeeds once that has passed."""
        self.stack.clock.advance(self.stack.settings.jwks_refetch_min_interval_seconds + 1)

    def session(self, session_id: str) -> Any:
        return self.stack.runtime.sessions.get_session(session_id, active_only=False)

    def active_sessions(self, user_id: str) -> set[str]:
        return {s.session_id for s in self.stack.runtime.sessions.list_sessions(user_id)}


@contextmanager
def world(
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    *,
    kms: bool = False,
) -> Iterator[World]:
    for name, value in FAULT_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        if kms:
            kms_client = boto3.client("kms")
            key_id = kms_client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")[
                "KeyMetadata"
            ]["KeyId"]
            monkeypatch.setenv("KEY_BACKEND", "kms")
            monkeypatch.setenv("KMS_SIGNING_KEY_ID", key_id)
        reset_settings()
        settings = Settings.from_env()
        create_table(boto3.client("dynamodb"), settings.sessions_table_name)
        access = KeySet([keys[settings.access_token_alg]], "access")
        secrets = boto3.client("secretsmanager")
        create_key_set_secret(secrets, settings.signing_keys_secret_id, access)
        create_key_set_secret(
            secrets, settings.refresh_keys_secret_id, KeySet([keys["HS256"]], "refresh")
        )
        published = access.verification_keys()
        if kms:
            der = kms_client.get_public_key(KeyId=key_id)["PublicKey"]
            public = serialization.load_der_public_key(der)
            published = [verification_key_for(public, "RS256", status=KeyStatus.ACTIVE)]  # type: ignore[arg-type]
        boto3.client("ssm").put_parameter(
            Name=settings.public_jwks_parameter,
            Type="String",
            Value=json.dumps(jwks_document(published)),
            Overwrite=True,
        )
        # Cheap Argon2 parameters: the suite logs in hundreds of times.
        runtime = Runtime(settings, clock, Parts(password_hasher=CHEAP_HASHER))
        user = runtime.users.create_user("alice", USER_PASSWORD, roles=["user"])
        admin = runtime.users.create_user("root", ADMIN_PASSWORD, roles=["admin", "user"])
        set_runtime(runtime)
        try:
            yield World(Stack(runtime, clock, settings, access, access, user, admin), kms)
        finally:
            set_runtime(None)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKeyEntry]:
    return {alg: generate_key(alg) for alg in ("RS256", "HS256")}


# --- the operations and their invariants ----------------------------------------------------------


def _assert_unavailable(label: str, result: HttpResult) -> None:
    assert result.status == 503, f"{label}: {result.status} {result.body}"
    assert result.json()["error"] == "temporarily_unavailable", label
    assert int(result.headers["retry-after"]) >= 1, label
    assert result.cookies == {}, f"{label}: a fault must not set or clear cookies"
    assert "access_token" not in result.body


def _login(w: World) -> HttpResult:
    return send("issuer/login-valid.json", password=USER_PASSWORD)


def _grant_of(result: HttpResult) -> TokenGrant:
    body = result.json()
    return TokenGrant(
        access_token=body["access_token"],
        refresh_token=result.cookies["__Secure-rt"].value,
        expires_in=body["expires_in"],
        session_id=body["session_id"],
        refresh_expires_at=0,
        fingerprint=result.cookies["__Host-fgp"].value,
    )


def check_login(
    w: World, label: str, fault: str, injected: str, result: HttpResult, before: set[str]
) -> str:
    """A login under a fault: 503 and no usable new session, or a success that is whole."""
    user_id = w.stack.user.user_id
    new = w.active_sessions(user_id) - before
    if result.status == 200:
        # Only a best-effort step may fail without failing the login: the session cap's read.
        assert injected == "dynamodb:Query", f"{label}: succeeded although {injected} failed"
        grant = _grant_of(result)
        assert new == {grant.session_id}
        assert w.stack.runtime.auth.verify_access(grant.access_token).session_id in new
        return "tolerated"
    _assert_unavailable(label, result)
    # No token left the process, so no new session may be usable: it was never written, or it
    # was revoked when minting failed, or (the write landed, its answer was lost) it exists
    # with a refresh token nobody holds.
    if fault != "lost_answer":
        assert new == set(), f"{label}: a failed login left an active session {new}"
    else:
        assert len(new) <= 1, label
    return "refused"


def check_refresh(
    w: World, label: str, fault: str, result: HttpResult, grant: TokenGrant, before_generation: int
) -> str:
    _assert_unavailable(label, result)
    session = w.session(grant.session_id)
    assert session.status != STATUS_REVOKED, f"{label}: a fault revoked the session (never reuse)"
    # The rotation is one conditional write: either it did not happen, or it happened and what
    # failed came after it (its answer was lost, or signing the new tokens failed).
    assert session.generation in (before_generation, before_generation + 1), label
    # The same refresh token works on retry: unchanged, or the lost rotation replays inside the
    # grace window and gets its successor.
    w.after_key_fault()
    retry = send(
        "refresher/refresh-cookie.json",
        refresh_token=grant.refresh_token,
        fingerprint=grant.fingerprint or "",
    )
    assert retry.status == 200, f"{label}: the retry failed: {retry.status} {retry.body}"
    return "refused"


def check_logout(w: World, label: str, fault: str, result: HttpResult, grant: TokenGrant) -> str:
    _assert_unavailable(label, result)
    session = w.session(grant.session_id)
    if fault != "lost_answer":
        assert session.status != STATUS_REVOKED, f"{label}: a failed write revoked the session"
    retry = send("revoker/logout-cookie.json", refresh_token=grant.refresh_token, fingerprint="")
    assert retry.status == 204, f"{label}: the retry failed: {retry.status}"
    assert w.session(grant.session_id).status == STATUS_REVOKED
    return "refused"


def _run_positions(
    w: World,
    injector: Injector,
    operation: str,
    prepare: Callable[[], Any],
    act: Callable[[Any], Any],
    check: Callable[[str, str, str, Any, Any], str],
    *,
    cold: bool = False,
    services: frozenset[str] | None = None,
) -> list[str]:
    """Run ``act`` once to count its calls, then once per (position, fault) with that call
    failing; ``check`` asserts the invariants. Returns the calls of the first run."""
    if cold:
        w.fresh_container()
    else:
        act(prepare())  # warm the container: every key is cached from here on
    state = prepare()
    injector.arm(None)
    act(state)
    calls = list(injector.calls)
    assert calls, f"{operation} made no AWS call"
    for position, call in enumerate(calls, start=1):
        if services is not None and call.split(":")[0] not in services:
            continue
        for fault in FAULTS:
            if cold:
                w.fresh_container()
            state = prepare()
            injector.arm(position, fault)
            result = act(state)
            injected = injector.injected
            injector.arm(None)
            label = f"{operation}: call {position} ({call}) fails with {fault}"
            assert injected == call, f"{label}: the call sequence changed ({injector.calls})"
            outcome = check(label, fault, call, result, state)
            record("faults", label, outcome in ("refused", "tolerated"))
    return calls


# --- login ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["warm", "cold", "kms"])
def test_login_fails_closed_at_every_call(
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    with world(monkeypatch, clock, keys, kms=mode == "kms") as w:
        assert _login(w).status == 200  # warm the container (and the user's hash)
        user_id = w.stack.user.user_id

        def prepare() -> set[str]:
            return w.active_sessions(user_id)

        calls = _run_positions(
            w,
            injector,
            f"login ({mode})",
            prepare,
            lambda before: _login(w),
            lambda label, fault, call, result, before: check_login(
                w, label, fault, call, result, before
            ),
            cold=mode != "warm",
            services=None if mode == "warm" else KEY_SERVICES,
        )
        if mode == "kms":
            assert "kms:Sign" in calls
        if mode == "cold":
            assert "secretsmanager:GetSecretValue" in calls


# --- refresh --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["warm", "cold", "kms"])
def test_refresh_fails_closed_and_the_same_token_works_on_retry(
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    with world(monkeypatch, clock, keys, kms=mode == "kms") as w:

        def prepare() -> tuple[TokenGrant, int]:
            injector.arm(None)
            grant = w.stack.login()
            return grant, w.session(grant.session_id).generation

        def act(state: tuple[TokenGrant, int]) -> HttpResult:
            grant, _ = state
            return send(
                "refresher/refresh-cookie.json",
                refresh_token=grant.refresh_token,
                fingerprint=grant.fingerprint or "",
            )

        def check(
            label: str, fault: str, call: str, result: HttpResult, state: tuple[TokenGrant, int]
        ) -> str:
            return check_refresh(w, label, fault, result, state[0], state[1])

        calls = _run_positions(
            w,
            injector,
            f"refresh ({mode})",
            prepare,
            act,
            check,
            cold=mode == "cold",
            services=None if mode == "warm" else KEY_SERVICES,
        )
        assert "dynamodb:UpdateItem" in calls
        if mode == "kms":
            assert "kms:Sign" in calls  # signed after the rotation: the grace window saves it


def _refresh_without_grace(grant: TokenGrant) -> HttpResult:
    return send("refresher/refresh-cookie.json", refresh_token=grant.refresh_token, fingerprint="")


def _rotation_position(calls: list[str]) -> int:
    """The rotation: the last UpdateItem (the first one is the rate-limit counter)."""
    return len(calls) - calls[::-1].index("dynamodb:UpdateItem")


@pytest.mark.parametrize("late_fault", ["the rotation's answer is lost", "KMS signing fails"])
def test_without_a_grace_window_a_retry_after_a_late_fault_is_reuse(
    late_fault: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    """The documented price of REFRESH_REUSE_GRACE_SECONDS=0 (docs/security.md, "known
    limitations"): when a fault comes after the rotation write landed (the client never sees
    its answer, or KMS fails to sign the new access token), the client's retry presents the
    previous token, which is reuse, and the session is revoked: the user logs in again.
    Nothing is allowed that should not be. With the default grace window the same retry gets
    the successor (``test_refresh_fails_closed_and_the_same_token_works_on_retry``)."""
    monkeypatch.setenv("REFRESH_REUSE_GRACE_SECONDS", "0")
    signing = late_fault.startswith("KMS")
    with world(monkeypatch, clock, keys, kms=signing) as w:
        _refresh_without_grace(w.stack.login())  # warm: every key loaded
        grant = w.stack.login()
        injector.arm(None)
        _refresh_without_grace(grant)
        calls = list(injector.calls)
        position = _rotation_position(calls)
        if signing:
            position = calls.index("kms:Sign", position) + 1
        grant = w.stack.login()
        injector.arm(position, "throttling" if signing else "lost_answer")
        result = _refresh_without_grace(grant)
        injector.arm(None)
        _assert_unavailable(late_fault, result)
        assert w.session(grant.session_id).status != STATUS_REVOKED
        retry = _refresh_without_grace(grant)
        assert retry.status == 401
        assert w.session(grant.session_id).status == STATUS_REVOKED


def test_without_a_grace_window_a_key_outage_fails_before_the_rotation(
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    """A cold container loads both signing keys before the rotation write, so a key store
    outage fails the refresh before anything changed: even without a grace window the
    client's retry presents a token that is still current, and gets its successor."""
    monkeypatch.setenv("REFRESH_REUSE_GRACE_SECONDS", "0")
    with world(monkeypatch, clock, keys) as w:
        w.fresh_container()
        grant = w.stack.login()
        w.fresh_container()
        injector.arm(None)
        _refresh_without_grace(grant)
        calls = list(injector.calls)
        rotation = _rotation_position(calls)
        key_reads = [i for i, call in enumerate(calls[:rotation], 1) if "GetSecretValue" in call]
        assert len(key_reads) == 2, calls  # the refresh key set (to verify), the access key set
        assert "secretsmanager:GetSecretValue" not in calls[rotation:]
        for position in key_reads:
            w.fresh_container()
            grant = w.stack.login()
            w.fresh_container()
            before = w.session(grant.session_id)
            injector.arm(position, "throttling")
            result = _refresh_without_grace(grant)
            injector.arm(None)
            _assert_unavailable(f"key read {position}", result)
            # Retry-After: when this container will read again. The refresh key ring waits out
            # its refetch interval after a failure; the signer's key set is read at the next call.
            interval = w.stack.settings.jwks_refetch_min_interval_seconds
            expected = interval if position == key_reads[0] else 1
            assert int(result.headers["retry-after"]) == expected
            assert w.session(grant.session_id) == before  # nothing changed
            w.after_key_fault()
            retry = _refresh_without_grace(grant)
            assert retry.status == 200, retry.body
            assert w.session(grant.session_id).generation == before.generation + 1


# --- revocation -----------------------------------------------------------------------------------


def test_logout_fails_closed_and_revokes_on_retry(
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    with world(monkeypatch, clock, keys) as w:

        def prepare() -> TokenGrant:
            injector.arm(None)
            return w.stack.login()

        def act(grant: TokenGrant) -> HttpResult:
            return send(
                "revoker/logout-cookie.json", refresh_token=grant.refresh_token, fingerprint=""
            )

        def check(label: str, fault: str, call: str, result: HttpResult, grant: TokenGrant) -> str:
            return check_logout(w, label, fault, result, grant)

        _run_positions(w, injector, "logout", prepare, act, check)


@pytest.mark.parametrize("route", ["revoke-all", "admin revoke"])
def test_revoking_every_session_fails_closed_and_finishes_on_retry(
    route: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    """Three sessions; any call failing part-way: 503, and the retry revokes all three (a 204
    only ever means every session is revoked)."""
    with world(monkeypatch, clock, keys) as w:
        stack = w.stack

        relative = (
            "revoker/revoke-all.json" if route == "revoke-all" else "revoker/admin-revoke.json"
        )

        def prepare() -> tuple[list[TokenGrant], dict[str, Any]]:
            injector.arm(None)
            grants = [stack.login() for _ in range(3)]
            caller = grants[0] if route == "revoke-all" else stack.login_admin()
            return grants, load_event(
                relative, **caller_placeholders(stack, caller), target_user_id=stack.user.user_id
            )

        def act(state: tuple[list[TokenGrant], dict[str, Any]]) -> HttpResult:
            return invoke("revoker", json.loads(json.dumps(state[1])))

        def check(
            label: str,
            fault: str,
            call: str,
            result: HttpResult,
            state: tuple[list[TokenGrant], dict[str, Any]],
        ) -> str:
            grants, _event = state
            _assert_unavailable(label, result)
            retry = act(state)
            assert retry.status == 204, f"{label}: the retry failed: {retry.status}"
            assert all(w.session(g.session_id).status == STATUS_REVOKED for g in grants), label
            return "refused"

        _run_positions(w, injector, route, prepare, act, check)


# --- a sensitive authorization ------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "tokencore-authorizer"
    aws_request_id: str = "5e0f8c1a-0000-4000-8000-000000000002"


@pytest.mark.parametrize("mode", ["warm", "cold", "kms"])
def test_a_sensitive_authorization_denies_at_every_call(
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    keys: dict[str, PrivateKeyEntry],
    injector: Injector,
) -> None:
    with world(monkeypatch, clock, keys, kms=mode == "kms") as w:
        grant = w.stack.login()

        def event() -> dict[str, Any]:
            return load_event(
                "authorizer/http-sensitive-route.json",
                access_token=grant.access_token,
                fingerprint=grant.fingerprint or "",
                device_id="",
            )

        def act(_: None) -> dict[str, Any]:
            return authorizer_app.lambda_handler(event(), LambdaContext())

        def check(label: str, fault: str, call: str, result: dict[str, Any], _: None) -> str:
            if result.get("isAuthorized") is True:
                # Only the revocation list's fetch may fail without a deny: the request then
                # reads the session (it does on this route anyway), which answered.
                assert call == "dynamodb:BatchGetItem", f"{label}: {result}"
                assert result["context"]["session_checked"] is True, f"{label}: {result}"
                return "tolerated"
            assert result == {"isAuthorized": False}, f"{label}: {result}"
            w.after_key_fault()
            allowed = act(None)  # faults over: the same request is allowed again
            assert allowed["isAuthorized"] is True, label
            return "refused"

        assert act(None)["isAuthorized"] is True  # the control
        _run_positions(
            w,
            injector,
            f"sensitive authorization ({mode})",
            lambda: None,
            act,
            check,
            cold=mode != "warm",
        )
