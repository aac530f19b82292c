"""Key rotation and emergency revocation over the local stack, as users and operators meet them:
``make dev`` in a subprocess, a user in a thread calling /me and refreshing all the time, and
``make ctl`` (tokenctl) rotating and revoking keys meanwhile.

The stack runs with the key caches at 2 s (JWKS_CACHE_TTL_SECONDS: verifiers' key lists, the
signers' key sets), refetches at most once a second and no clock leeway, so every key bound in
docs/keys.md is a few seconds here. The stack's time moves only when a test advances it past
such a bound (devserver.clock; `make ctl` follows the same clock), so nothing waits for time to
pass: the user keeps working in real time meanwhile, and every request it makes meets whatever
state the rotation has reached.

The stack's clock also runs on with the wall clock, so whatever must outlive the test lives
longer than any run of it, however slow the machine: access tokens live an hour (the first
one must work throughout; the test then moves the clock to its expiry), sessions two.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
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
PAST_THE_CACHE = CACHE_SECONDS + 0.5
JWKS_ENDPOINT_CACHE_SECONDS = 5  # the issuer's cache of the published JWKS (runtime.py)
ACCESS_TTL_SECONDS = 3600
BEFORE_EXPIRY = 60  # how far before its expiry the first token is tried: the clock runs on
WORKER_DEADLINE_SECONDS = 120  # for the user's thread to show a step: only a hang takes this long
REFRESH_COOKIE = "__Secure-rt"


@pytest.fixture(scope="module")
def rotating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = launch_stack(
        Path(tmp_path_factory.mktemp("rotation")),
        JWKS_CACHE_TTL_SECONDS=str(CACHE_SECONDS),
        JWKS_REFETCH_MIN_INTERVAL_SECONDS="1",
        ACCESS_TOKEN_TTL_SECONDS=str(ACCESS_TTL_SECONDS),
        REFRESH_TOKEN_TTL_SECONDS=str(2 * ACCESS_TTL_SECONDS),
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


def rotate(stack: RunningStack, *args: str) -> dict[str, Any]:
    """tokenctl rotate-keys once the next key has been published for the cache TTL (it
    promotes only then: every verifier has had the key that long; docs/keys.md)."""
    stack.advance_clock(PAST_THE_CACHE)
    report: dict[str, Any] = ctl(stack, "rotate-keys", *args)
    assert report["promoted"] is True, report
    return report


def kid(token: str) -> str:
    return str(header_of(token)["kid"])


@dataclass
class ActiveUser:
    """A user who keeps working: /me every 50 ms with the current access token and with the
    very first one, a refresh every half second. Every answer is kept."""

    stack: RunningStack
    client: Client
    first_token: str
    token: str
    stop: threading.Event = field(default_factory=threading.Event)
    seen: threading.Condition = field(default_factory=threading.Condition)
    denied: list[str] = field(default_factory=list)
    access_kids: list[str] = field(default_factory=list)
    refresh_kids: list[str] = field(default_factory=list)
    requests: int = 0
    first_token_answers: list[int] = field(default_factory=list)

    def run(self) -> None:
        refreshes = 0
        while not self.stop.is_set():
            me = self.client.request("GET", "/me", bearer=self.token)
            self._record("GET /me", me.status)
            first = self.client.request("GET", "/me", bearer=self.first_token).status
            with self.seen:
                self.first_token_answers.append(first)
            refreshes += 1
            if refreshes % 10 == 0:  # every tenth round: about every half second
                refreshed = self.client.refresh()
                self._record("POST /auth/refresh", refreshed.status)
                if refreshed.status == 200:
                    self.token = refreshed.json()["access_token"]
                    with self.seen:
                        self.access_kids.append(kid(self.token))
                        cookie = self.client.cookie(REFRESH_COOKIE)
                        if cookie:
                            self.refresh_kids.append(kid(cookie))
                        self.seen.notify_all()
            self.stop.wait(0.05)  # pacing: a person's rate, not a wait for the stack

    def _record(self, what: str, status: int) -> None:
        with self.seen:
            self.requests += 1
            if status != 200:
                self.denied.append(f"{what}: {status}")

    def wait_for(self, what: str, kids: list[str], wanted: str) -> None:
        """Until the user's refreshes bring a token of ``wanted`` (the thread's progress)."""
        with self.seen:
            if not self.seen.wait_for(lambda: wanted in kids, WORKER_DEADLINE_SECONDS):
                pytest.fail(f"{what}: the active user never got one")


def test_rotation_while_a_user_is_active_denies_nothing(rotating: RunningStack) -> None:
    client = rotating.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    first = login.json()["access_token"]
    first_kid = kid(first)
    first_refresh_kid = kid(client.cookie(REFRESH_COOKIE) or "")
    expires_at = int(json.loads(_b64(first.split(".")[1]))["exp"])
    user = ActiveUser(rotating, client, first, first)
    worker = threading.Thread(target=user.run, name="active-user", daemon=True)
    worker.start()
    try:
        # 1. The access key: the next key KeySetup published at start-up becomes active.
        access = rotate(rotating)
        assert access["newly_retired_kid"] == first_kid
        second_kid = access["active_kid"]
        # The new key was in the JWKS before it signed anything, and so is the next one.
        published = {key["kid"] for key in ctl(rotating, "show-jwks")["keys"]}
        assert {first_kid, second_kid, access["added_next_kid"]} <= published
        # New tokens are signed by the new key once the signers' cache TTL has passed.
        rotating.advance_clock(PAST_THE_CACHE)
        user.wait_for("an access token signed by the new key", user.access_kids, second_kid)

        # 2. The refresh key, the same way: the user's refresh token of the previous key keeps
        # working (it is rotated at the next refresh, signed by the new key).
        refresh = rotate(rotating, "--refresh")
        assert refresh["newly_retired_kid"] == first_refresh_kid
        assert refresh["published"] is False
        rotating.advance_clock(PAST_THE_CACHE)
        user.wait_for(
            "a refresh token signed by the new refresh key",
            user.refresh_kids,
            refresh["active_kid"],
        )

        # 3. Another access rotation (the key published by the first one); two keys retired.
        again = rotate(rotating)
        assert again["active_kid"] == access["added_next_kid"]
        rotating.advance_clock(PAST_THE_CACHE)
        user.wait_for(
            "an access token signed by the third key", user.access_kids, again["active_kid"]
        )
        listed = ctl(rotating, "list-keys")["access"]["keys"]
        statuses = {key["kid"]: key["status"] for key in listed}
        assert statuses[first_kid] == "retired"  # its tokens have not all expired yet
        assert statuses[second_kid] == "retired"
    finally:
        user.stop.set()
        worker.join(timeout=WORKER_DEADLINE_SECONDS)
    assert user.denied == [], f"{len(user.denied)} of {user.requests} requests denied"
    assert user.requests > 20
    # The first access token, signed by a key retired twice over, worked throughout.
    assert user.first_token_answers
    assert set(user.first_token_answers) == {200}

    # 4. ... and until it expires (no leeway on this stack), not a second longer. The clock
    # runs on between moving it and the request, hence the margin before the expiry; after it,
    # any delay only moves the token further past its expiry.
    rotating.advance_clock(max(0.0, expires_at - BEFORE_EXPIRY - rotating.clock()))
    assert client.request("GET", "/me", bearer=first).status == 200
    rotating.advance_clock(BEFORE_EXPIRY + 1)
    assert client.request("GET", "/me", bearer=first).status == 403


def test_emergency_revocation_refuses_the_keys_tokens_within_the_bound(
    rotating: RunningStack,
) -> None:
    client = rotating.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    token = login.json()["access_token"]
    victim = kid(token)
    assert client.request("GET", "/me", bearer=token).status == 200

    # "--": a kid may start with "-" (one time in 64); tokenctl takes it either way.
    report = ctl(rotating, "revoke-key", "--", victim)
    assert report["revoked_kid"] == victim
    assert report["revoked_status"] == "active"
    assert report["verifiers_refuse_within_seconds"] == CACHE_SECONDS
    # Gone from the published JWKS at once.
    assert victim not in {key["kid"] for key in ctl(rotating, "show-jwks")["keys"]}

    # Every authorizer refuses its tokens once the key cache's TTL has passed (403: the HTTP
    # API's answer when the authorizer denies), and for good.
    rotating.advance_clock(PAST_THE_CACHE)
    for _ in range(5):
        assert client.request("GET", "/me", bearer=token).status == 403
    # New tokens come from the replacement key (the next key, already published).
    fresh_client = rotating.client()
    fresh = fresh_client.login(DEMO_USER, DEMO_PASSWORD).json()["access_token"]
    assert kid(fresh) == report["active_kid"]
    assert fresh_client.request("GET", "/me", bearer=fresh).status == 200

    # The issuer's JWKS endpoint drops it within its own few seconds.
    rotating.advance_clock(JWKS_ENDPOINT_CACHE_SECONDS)
    answer = rotating.client().request("GET", "/.well-known/jwks.json")
    assert answer.status == 200
    assert victim not in {k["kid"] for k in answer.json()["keys"]}

    # The refresh key too: the session's refresh token is refused within the same bound.
    refresh_kid = kid(client.cookie(REFRESH_COOKIE) or "")
    revoked = ctl(rotating, "revoke-key", "--", refresh_kid)
    assert revoked["key_set"] == "refresh"
    rotating.advance_clock(PAST_THE_CACHE)
    assert client.copy().refresh().status == 401


def test_revoke_key_refuses_an_unknown_kid(rotating: RunningStack) -> None:
    result = rotating.ctl("revoke-key", "no-such-key")
    assert result.returncode == 1
    assert result.stderr.startswith("tokenctl: key_not_found: no key 'no-such-key'")
    assert result.stdout == ""


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
