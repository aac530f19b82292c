"""AWS calls per operation (budget 4 of the performance issue), counted at botocore's
``BaseClient._make_api_call`` (a spy that delegates to moto), through the real handlers and
events/. Each function runs in a container of its own (a fresh ``Runtime``, as Lambda gives
each function its own), so a key set loaded by one function is never counted for another.

=======================  ======  ==========================================================
operation (warm)         budget  calls today
=======================  ======  ==========================================================
authorizer fast path     0       none: keys from PUBLIC_JWKS, claims verified locally
authorizer sensitive     1       BatchGetItem (the session and its user's standing)
login                    <= 4    4: TransactWriteItems (a slot in both rate-limit windows, each
                                 under its limit: the limit is the write's condition, before
                                 any password work), GetItem (the username claim, which
                                 carries the profile), PutItem (the session), Query (the
                                 session cap). A wrong password: 2 (the slot, the claim); no
                                 free slot: 1 (no read, no Argon2 work).
refresh                  <= 3    3: UpdateItem (rate limit), GetItem (user), UpdateItem
                                 (rotation)
logout                   <= 2    1: UpdateItem (revocation)
=======================  ======  ==========================================================

Key sets are read once per container, on the first operation that needs each: the first login
adds the access and refresh key sets (2 GetSecretValue), the first refresh of a refresher the
refresh key set (to verify) and the access key set (to sign), the first logout of a revoker the
refresh key set only (it never signs, and its IAM policy could not read the signing keys).

Set ``BENCH_CALLS_REPORT`` to a file name to have every counted operation appended to it as a
JSON line (``make bench`` prints them with their budgets).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions.authorizer import app as authorizer_app
from tests.awsspy import AwsCall, intercept_aws_calls
from tests.functional.conftest import CHEAP_HASHER, USER_PASSWORD, Stack, load_event
from tests.functional.test_authorizer import FakeContext
from tests.functional.test_http_edge import HttpResult, invoke
from tokencore.claimscache import ClaimsCache
from tokencore.config import RateLimit
from tokencore.runtime import Parts, Runtime, set_runtime

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

BUDGETS = {
    "authorizer fast path": 0,
    "authorizer sensitive path": 1,
    "login": 4,
    "refresh": 3,
    "logout": 2,
}


class Calls:
    """The AWS calls made since the last ``take``."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def take(self) -> list[str]:
        taken, self.log = self.log, []
        return taken


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counted = Calls()

    def record(call: AwsCall) -> Any:
        counted.log.append(call.name)  # ``take`` swaps the list: look it up on each call
        return call.proceed()

    intercept_aws_calls(monkeypatch, record)
    return counted


class Containers:
    """One Runtime per function, built on first use, installed before each invocation."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._runtimes: dict[str, Runtime] = {}

    def use(self, function: str) -> Runtime:
        runtime = self._runtimes.get(function)
        if runtime is None:
            runtime = self._runtimes[function] = self._new(function)
        set_runtime(runtime)
        return runtime

    def _new(self, function: str) -> Runtime:
        stack = self._stack
        # The suite's cheap Argon2 parameters (the users were hashed with them: the default
        # hasher would rehash on login, one more write that a deployment never makes).
        parts = Parts(password_hasher=CHEAP_HASHER)
        if function == "authorizer":
            # PUBLIC_JWKS, as the template gives it: the key ring starts with the keys.
            parts = Parts(
                password_hasher=CHEAP_HASHER,
                initial_access_keys=stack.access_keys.verification_keys(),
            )
        return Runtime(stack.settings, stack.clock, parts)


@pytest.fixture
def containers(stack: Stack) -> Iterator[Containers]:
    yield Containers(stack)
    set_runtime(stack.runtime)


def _report(operation: str, phase: str, made: list[str]) -> None:
    path = os.environ.get("BENCH_CALLS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as report:
            line = {"operation": operation, "phase": phase, "calls": made}
            report.write(json.dumps(line) + "\n")


def _measure(
    operation: str, calls: Calls, action: Callable[[], Any], *, phase: str = "warm"
) -> list[str]:
    calls.take()
    action()
    made = calls.take()
    _report(operation, phase, made)
    return made


def _login(containers: Containers) -> HttpResult:
    containers.use("issuer")
    result = invoke("issuer", load_event("issuer/login-valid.json", password=USER_PASSWORD))
    assert result.status == 200, result.body
    return result


def _with_cookies(
    containers: Containers, function: str, event: str, login: HttpResult, status: int
) -> HttpResult:
    """Invoke ``function`` with ``event`` carrying the login's refresh and fingerprint cookies."""
    containers.use(function)
    result = invoke(
        function,
        load_event(
            event,
            refresh_token=login.cookies["__Secure-rt"].value,
            fingerprint=login.cookies["__Host-fgp"].value,
        ),
    )
    assert result.status == status, result.body
    return result


def _refresh(containers: Containers, login: HttpResult) -> HttpResult:
    return _with_cookies(containers, "refresher", "refresher/refresh-cookie.json", login, 200)


def _logout(containers: Containers, login: HttpResult) -> HttpResult:
    return _with_cookies(containers, "revoker", "revoker/logout-cookie.json", login, 204)


def _authorize(containers: Containers, login: HttpResult, name: str) -> dict[str, Any]:
    containers.use("authorizer")
    event = load_event(
        f"authorizer/{name}.json",
        access_token=login.json()["access_token"],
        fingerprint=login.cookies["__Host-fgp"].value,
        session_id=login.json()["session_id"],
        device_id="laptop-7f3a",
    )
    answer: dict[str, Any] = authorizer_app.lambda_handler(event, FakeContext())
    assert answer["isAuthorized"] is True, answer
    return answer


# --- the authorizer -----------------------------------------------------------------------------


def test_authorizer_fast_path_makes_no_call(containers: Containers, calls: Calls) -> None:
    login = _login(containers)
    made = _measure(
        "authorizer fast path", calls, lambda: _authorize(containers, login, "http-valid")
    )
    assert made == []
    again = _measure(
        "authorizer fast path",
        calls,
        lambda: _authorize(containers, login, "http-valid"),
        phase="warm, token seen before",
    )
    assert again == []


def test_authorizer_sensitive_path_makes_one_read(containers: Containers, calls: Calls) -> None:
    login = _login(containers)
    _authorize(containers, login, "http-valid")  # the token is in the claims cache now
    made = _measure(
        "authorizer sensitive path",
        calls,
        lambda: _authorize(containers, login, "http-sensitive-route"),
    )
    # The claims cache skips verification only: the session is read on every sensitive call.
    assert made == ["dynamodb:BatchGetItem"]
    assert _measure(
        "authorizer sensitive path",
        calls,
        lambda: _authorize(containers, login, "http-sensitive-route"),
        phase="warm, token seen before",
    ) == ["dynamodb:BatchGetItem"]


def test_the_authorizer_caches_claims(containers: Containers) -> None:
    login = _login(containers)
    _authorize(containers, login, "http-valid")
    _authorize(containers, login, "http-valid")
    cache = authorizer_app._authorizer().claims_cache
    assert isinstance(cache, ClaimsCache)
    assert (cache.hits, cache.misses) == (1, 1)


# --- the flows ------------------------------------------------------------------------------------

LOGIN_CALLS = [
    "dynamodb:TransactWriteItems",  # a slot in both windows, each under its limit
    "dynamodb:GetItem",  # the username claim (a copy of the profile)
    "dynamodb:PutItem",  # the session
    "dynamodb:Query",  # the session cap (by_user)
]
REFRESH_CALLS = [
    "dynamodb:UpdateItem",  # rate limit: user
    "dynamodb:GetItem",  # the user, re-read (disabled users and role changes take effect)
    "dynamodb:UpdateItem",  # the rotation, one conditional write
]
LOGOUT_CALLS = ["dynamodb:UpdateItem"]  # the revocation


def test_login_calls(containers: Containers, calls: Calls) -> None:
    first = _measure("login", calls, lambda: _login(containers), phase="first in container")
    assert sorted(first) == sorted(
        [*LOGIN_CALLS, "secretsmanager:GetSecretValue", "secretsmanager:GetSecretValue"]
    )
    assert _measure("login", calls, lambda: _login(containers)) == LOGIN_CALLS


def test_login_is_within_its_budget(containers: Containers, calls: Calls) -> None:
    _login(containers)
    calls.take()
    _login(containers)
    assert len(calls.take()) <= BUDGETS["login"]


def test_a_wrong_password_takes_a_slot_and_reads_once(containers: Containers, calls: Calls) -> None:
    _login(containers)  # key sets loaded
    containers.use("issuer")
    answers: list[HttpResult] = []
    event = load_event("issuer/login-valid.json", password="not the password")
    made = _measure("login, wrong password", calls, lambda: answers.append(invoke("issuer", event)))
    assert answers[0].status == 401
    assert made == ["dynamodb:TransactWriteItems", "dynamodb:GetItem"]


def test_a_full_window_refuses_after_one_write_attempt(stack: Stack, calls: Calls) -> None:
    # Its own container, with a per-username limit of 1 per 5 minutes.
    settings = dataclasses.replace(stack.settings, login_rate_limit=RateLimit(1, 300))
    limited = Containers(dataclasses.replace(stack, settings=settings))
    _login(limited)
    limited.use("issuer")
    answers: list[HttpResult] = []
    event = load_event("issuer/login-valid.json", password=USER_PASSWORD)
    made = _measure("login, rate limited", calls, lambda: answers.append(invoke("issuer", event)))
    assert answers[0].status == 429
    assert made == ["dynamodb:TransactWriteItems"]  # refused by its condition: nothing read


def test_refresh_calls(containers: Containers, calls: Calls) -> None:
    login = _login(containers)
    first = _measure(
        "refresh", calls, lambda: _refresh(containers, login), phase="first in container"
    )
    # The refresh key set to verify, the access key set to sign: each read once.
    assert sorted(first) == sorted(
        [*REFRESH_CALLS, "secretsmanager:GetSecretValue", "secretsmanager:GetSecretValue"]
    )
    second = _login(containers)
    made = _measure("refresh", calls, lambda: _refresh(containers, second))
    assert made == REFRESH_CALLS
    assert len(made) <= BUDGETS["refresh"]


def test_logout_calls(containers: Containers, calls: Calls) -> None:
    login, other = _login(containers), _login(containers)
    first = _measure(
        "logout", calls, lambda: _logout(containers, login), phase="first in container"
    )
    # Only the refresh key set (to verify the token), never the signing keys.
    assert first == ["secretsmanager:GetSecretValue", *LOGOUT_CALLS]
    made = _measure("logout", calls, lambda: _logout(containers, other))
    assert made == LOGOUT_CALLS
    assert len(first) <= BUDGETS["logout"]


def test_key_sets_are_read_once_per_container(containers: Containers, calls: Calls) -> None:
    logins = [_login(containers) for _ in range(3)]
    refreshed = [_refresh(containers, login) for login in logins]
    for result in refreshed:
        _logout(containers, result)
    secret_reads = [call for call in calls.take() if call.startswith("secretsmanager:")]
    # issuer: access + refresh; refresher: refresh + access; revoker: refresh.
    assert len(secret_reads) == 5
