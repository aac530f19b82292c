"""Key rotation and emergency revocation over the local stack, as users and operators meet them:
``make dev`` in a subprocess, a user in a thread calling /me and refreshing all the time, and
``make ctl`` (tokenctl) rotating and revoking keys meanwhile.

The stack runs with the key caches at 2 s (JWKS_CACHE_TTL_SECONDS: verifiers' key lists, the
signers' key sets), refetches at most once a second, 30 s access tokens and no clock leeway, so
every bound in docs/keys.md is a few seconds here. Nothing sleeps for a fixed time: every wait
is a poll with a deadline derived from those bounds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.client import Client
from tests.e2e.conftest import (
    DEMO_PASSWORD,
    DEMO_USER,
    RunningStack,
    launch_stack,
    wait_until_ready,
)
from tests.e2e.test_flows import header_of

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 2  # JWKS_CACHE_TTL_SECONDS on this stack
ACCESS_TTL_SECONDS = 30
MARGIN_SECONDS = 3  # a slow machine: the bounds are exact, the observation is not
REFRESH_COOKIE = "__Secure-rt"


@pytest.fixture(scope="module")
def rotating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = launch_stack(
        Path(tmp_path_factory.mktemp("rotation")),
        JWKS_CACHE_TTL_SECONDS=str(CACHE_SECONDS),
        JWKS_REFETCH_MIN_INTERVAL_SECONDS="1",
        ACCESS_TOKEN_TTL_SECONDS=str(ACCESS_TTL_SECONDS),
        REFRESH_TOKEN_TTL_SECONDS="600",
        CLOCK_SKEW_LEEWAY_SECONDS="0",
        SESSION_CHECK_SAMPLE_RATE="0",
        REFRESH_RATE_LIMIT="10000/60",
        LOGIN_RATE_LIMIT="1000/300",
        LOGIN_IP_RATE_LIMIT="1000/300",
    )
    try:
        wait_until_ready(stack)
        yield stack
    finally:
        import signal

        code = stack.stop(signal.SIGTERM)
        assert code == 0, stack.logs()[-3000:]
        assert "Traceback" not in stack.logs(), stack.logs()[-3000:]


def ctl(stack: RunningStack, *args: str) -> Any:
    result = stack.ctl(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def eventually(what: str, check: Callable[[], Any], deadline_seconds: float) -> Any:
    """Poll ``check`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {deadline_seconds} s")
        time.sleep(0.1)


def rotate_until_promoted(stack: RunningStack, *args: str) -> dict[str, Any]:
    """tokenctl rotate-keys; it promotes only once verifiers have had the next key for the
    cache TTL, so a rotation right after the previous one waits (changed: false) first."""
    report: dict[str, Any] = {}

    def attempt() -> bool:
        report.update(ctl(stack, "rotate-keys", *args))
        return bool(report["promoted"])

    eventually("rotate-keys promoting the next key", attempt, CACHE_SECONDS + 20)
    return report


def kid(token: str) -> str:
    return str(header_of(token)["kid"])


@dataclass
class ActiveUser:
    """A user who keeps working: /me every 50 ms with the current access token, a refresh every
    half second, and the very first access token tried until it expires. Every answer is kept."""

    stack: RunningStack
    client: Client
    first_token: str
    first_expires_at: int
    token: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    denied: list[str] = field(default_factory=list)
    access_kids: list[str] = field(default_factory=list)
    refresh_kids: list[str] = field(default_factory=list)
    requests: int = 0
    first_token_accepted_until: float = 0.0
    first_token_refused_at: float | None = None
    first_token_wrongly_refused: list[float] = field(default_factory=list)

    def run(self) -> None:
        last_refresh = time.monotonic()
        while not self.stop.is_set():
            me = self.client.request("GET", "/me", bearer=self.token)
            self._record("GET /me", me.status)
            if time.monotonic() - last_refresh >= 0.5:
                last_refresh = time.monotonic()
                refreshed = self.client.refresh()
                self._record("POST /auth/refresh", refreshed.status)
                if refreshed.status == 200:
                    self.token = refreshed.json()["access_token"]
                    with self.lock:
                        self.access_kids.append(kid(self.token))
                        cookie = self.client.cookie(REFRESH_COOKIE)
                        if cookie:
                            self.refresh_kids.append(kid(cookie))
            self._try_first_token()
            time.sleep(0.05)

    def _record(self, what: str, status: int) -> None:
        with self.lock:
            self.requests += 1
            if status != 200:
                self.denied.append(f"{what}: {status}")

    def _try_first_token(self) -> None:
        now = time.time()
        if self.first_token_refused_at is not None:
            return
        status = self.client.request("GET", "/me", bearer=self.first_token).status
        with self.lock:
            if status == 200:
                self.first_token_accepted_until = now
            elif now < self.first_expires_at - 1:  # a second of slack for the clocks' reading
                self.first_token_wrongly_refused.append(now)
            else:
                self.first_token_refused_at = now

    def saw(self, kids: list[str], wanted: str) -> bool:
        with self.lock:
            return wanted in kids


def test_rotation_while_a_user_is_active_denies_nothing(rotating: RunningStack) -> None:
    client = rotating.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    first = login.json()["access_token"]
    first_kid = kid(first)
    first_refresh_kid = kid(client.cookie(REFRESH_COOKIE) or "")
    expires_at = int(json.loads(_b64(first.split(".")[1]))["exp"])
    user = ActiveUser(rotating, client, first, expires_at, first)
    worker = threading.Thread(target=user.run, name="active-user", daemon=True)
    worker.start()
    try:
        # 1. The access key: the next key KeySetup published at start-up becomes active.
        access = rotate_until_promoted(rotating)
        assert access["newly_retired_kid"] == first_kid
        second_kid = access["active_kid"]
        # The new key was in the JWKS before it signed anything, and so is the next one.
        published = {key["kid"] for key in ctl(rotating, "show-jwks")["keys"]}
        assert {first_kid, second_kid, access["added_next_kid"]} <= published
        # New tokens are signed by the new key within the signers' cache TTL.
        eventually(
            "an access token signed by the new key",
            lambda: user.saw(user.access_kids, second_kid),
            CACHE_SECONDS + MARGIN_SECONDS,
        )

        # 2. The refresh key, the same way: the user's refresh token of the previous key keeps
        # working (it is rotated at the next refresh, signed by the new key).
        refresh = rotate_until_promoted(rotating, "--refresh")
        assert refresh["newly_retired_kid"] == first_refresh_kid
        assert refresh["published"] is False
        eventually(
            "a refresh token signed by the new refresh key",
            lambda: user.saw(user.refresh_kids, refresh["active_kid"]),
            CACHE_SECONDS + MARGIN_SECONDS,
        )

        # 3. Another access rotation (the key published by the first one); two keys retired.
        again = rotate_until_promoted(rotating)
        assert again["active_kid"] == access["added_next_kid"]
        eventually(
            "an access token signed by the third key",
            lambda: user.saw(user.access_kids, again["active_kid"]),
            CACHE_SECONDS + MARGIN_SECONDS,
        )
        listed = ctl(rotating, "list-keys")["access"]["keys"]
        statuses = {key["kid"]: key["status"] for key in listed}
        assert statuses[first_kid] == "retired"  # its tokens have not all expired yet
        assert statuses[second_kid] == "retired"

        # 4. The first access token, signed by a key retired long ago, works until it expires.
        eventually(
            "the first access token expiring",
            lambda: user.first_token_refused_at is not None,
            max(0.0, expires_at - time.time()) + MARGIN_SECONDS,
        )
    finally:
        user.stop.set()
        worker.join(timeout=10)
    assert user.denied == [], f"{len(user.denied)} of {user.requests} requests denied"
    assert user.requests > 100
    assert user.first_token_wrongly_refused == []
    assert user.first_token_accepted_until >= expires_at - 2
    assert user.first_token_refused_at is not None
    assert user.first_token_refused_at >= expires_at - 1


def test_emergency_revocation_refuses_the_keys_tokens_within_the_bound(
    rotating: RunningStack,
) -> None:
    client = rotating.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    token = login.json()["access_token"]
    victim = kid(token)
    assert client.request("GET", "/me", bearer=token).status == 200

    started = time.monotonic()
    report = ctl(rotating, "revoke-key", victim)
    assert report["revoked_kid"] == victim
    assert report["revoked_status"] == "active"
    assert report["verifiers_refuse_within_seconds"] == CACHE_SECONDS
    # Gone from the published JWKS at once, and from the issuer's endpoint within seconds.
    assert victim not in {key["kid"] for key in ctl(rotating, "show-jwks")["keys"]}

    def endpoint_dropped_it() -> bool:
        answer = rotating.client().request("GET", "/.well-known/jwks.json")
        return answer.status == 200 and victim not in {k["kid"] for k in answer.json()["keys"]}

    eventually("the JWKS endpoint dropping the key", endpoint_dropped_it, 5 + MARGIN_SECONDS)

    # Every authorizer refuses its tokens within the key cache's TTL (403: the HTTP API's
    # answer when the authorizer denies).
    eventually(
        "the revoked key's token refused",
        lambda: client.request("GET", "/me", bearer=token).status == 403,
        CACHE_SECONDS + MARGIN_SECONDS,
    )
    assert time.monotonic() - started <= CACHE_SECONDS + MARGIN_SECONDS + 5
    # And for good: the key is not coming back.
    for _ in range(5):
        assert client.request("GET", "/me", bearer=token).status == 403

    # New tokens come from the replacement key (the next key, already published).
    def signed_by_replacement() -> bool:
        answer = rotating.client().login(DEMO_USER, DEMO_PASSWORD)
        return answer.status == 200 and kid(answer.json()["access_token"]) == report["active_kid"]

    eventually("a login signed by the replacement key", signed_by_replacement, CACHE_SECONDS + 3)
    fresh_client = rotating.client()
    fresh = fresh_client.login(DEMO_USER, DEMO_PASSWORD).json()["access_token"]
    assert fresh_client.request("GET", "/me", bearer=fresh).status == 200

    # The refresh key too: the session's refresh token is refused within the same bound.
    refresh_kid = kid(client.cookie(REFRESH_COOKIE) or "")
    revoked = ctl(rotating, "revoke-key", refresh_kid)
    assert revoked["key_set"] == "refresh"
    copy = client.copy()
    eventually(
        "the revoked refresh key's token refused",
        lambda: copy.copy().refresh().status == 401,
        CACHE_SECONDS + MARGIN_SECONDS,
    )


def test_revoke_key_refuses_an_unknown_kid(rotating: RunningStack) -> None:
    result = rotating.ctl("revoke-key", "no-such-key")
    assert result.returncode == 1
    assert result.stderr.startswith("tokenctl: no key 'no-such-key'")
    assert result.stdout == ""


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
