"""AWS fault injection in the running local stack (devserver.faults), as `make load` drives it:
a stack started with every AWS call failing still provisions itself, then its functions fail
closed (503 with Retry-After, never a token), and /_dev/faults turns the faults off and
reports what it injected."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.client import Client
from tests.e2e.conftest import (
    DEMO_PASSWORD,
    DEMO_USER,
    RunningStack,
    launch_stack,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = launch_stack(
        Path(tmp_path_factory.mktemp("faults")),
        DEV_FAULTS='{"rate": 1.0, "kinds": ["throttle"], "services": ["dynamodb"]}',
    )
    try:
        wait_until_ready(stack)  # provisioning (the table, the users) met no fault
        yield stack
    finally:
        code = stack.stop(signal.SIGTERM)
        assert code == 0, stack.logs()[-3000:]
        assert "Traceback" not in stack.logs(), stack.logs()[-3000:]


def test_every_dynamodb_call_throttled_fails_closed_then_recovers(faulty: RunningStack) -> None:
    client = faulty.client()
    refused = client.login(DEMO_USER, DEMO_PASSWORD)
    assert refused.status == 503, refused
    assert refused.header("Retry-After") == "1"
    assert b"access_token" not in refused.body
    assert client.cookie("__Secure-rt") is None

    counters = Client(faulty.base_url).request("GET", "/_dev/faults")
    assert counters.status == 200
    injected = counters.json()["injected"]["throttle"]
    # The login stopped at its first DynamoDB call (today the rate-limit admission, a
    # transaction) after every attempt botocore made.
    assert max(injected.values(), default=0) >= 3, injected

    off = Client(faulty.base_url).request("POST", "/_dev/faults", json_body={"rate": 0})
    assert off.status == 200
    assert off.json()["plan"]["rate"] == 0
    assert client.login(DEMO_USER, DEMO_PASSWORD).status == 200


def test_the_control_takes_json_only_and_grants_no_cors(faulty: RunningStack) -> None:
    # A web page's request is refused for its origin (as /_dev/clock), and a form's body type
    # is refused even without one.
    foreign = Client(faulty.base_url).request(
        "POST",
        "/_dev/faults",
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    plain = Client(faulty.base_url).request(
        "POST", "/_dev/faults", headers={"Content-Type": "text/plain"}
    )
    assert plain.status == 415
    for answer in (foreign, plain):
        assert not any(name.lower().startswith("access-control-") for name, _ in answer.headers)
    preflight = Client(faulty.base_url).request(
        "OPTIONS",
        "/_dev/faults",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert not any(name.lower().startswith("access-control-") for name, _ in preflight.headers)
