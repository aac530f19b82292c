"""Fixtures for the session-store contract: the same tests run against every backend.

Backends:

* ``memory``: InMemorySessionStore.
* ``moto``: DynamoDBSessionStore on moto's ``mock_aws`` (fast, in process; it does not serialize
  conditional writes, so it is never used for races).
* ``dynalite``: DynamoDBSessionStore over HTTP on dynalite, a Node DynamoDB implementation that
  locks each item for a conditional write (npm, pinned in package.json / package-lock.json).
  It ignores ReturnValuesOnConditionCheckFailure, so it also exercises the store's fallback read.
  The store builds its own client here, from AWS_ENDPOINT_URL, as it does in ``make dev``.
  It has no transactions.
* ``motoserver``: the local stack's own embedded AWS endpoint over HTTP (devserver.awsendpoint:
  moto's server with DynamoDB, Secrets Manager, SSM and KMS requests serialized), so conditional
  writes AND transactions are atomic under concurrency, as on DynamoDB (and label moves,
  parameter versions and alias moves as in AWS: test_key_races.py). Used for races only.

Requests are observed with botocore's ``before-call`` event (the serialized request, after
parameter validation, before moto or the network) and faults are injected through the same
event, so the store's real client and error handling run unchanged.
"""

from __future__ import annotations

import itertools
import json
import select
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from moto import mock_aws

from tests.clock import ManualClock
from tokencore.config import Settings
from tokencore.sessions import DynamoDBSessionStore, InMemorySessionStore, SessionStore
from tokencore.store.table import TABLE_DEFINITION, create_table

REPO_ROOT = Path(__file__).resolve().parents[2]
DYNALITE_SERVER = Path(__file__).resolve().parent / "dynalite_server.js"
DYNALITE_PACKAGE = REPO_ROOT / "node_modules" / "dynalite" / "package.json"
REGION = "us-east-1"

ALL_BACKENDS = ("memory", "moto", "dynalite")
DYNAMODB_BACKENDS = ("moto", "dynalite")
# Atomic conditional writes under concurrency (dynalite: single-item writes only).
SERIALIZING_BACKENDS = ("memory", "dynalite", "motoserver")
TRANSACTIONAL_SERIALIZING_BACKENDS = ("memory", "motoserver")
# A test marked ``transactions`` writes with TransactWriteItems (a revocation: the session and
# its revocation-list entry, tokencore.revocations), which dynalite lacks: the serialized
# motoserver stands in for it in each set.
WITHOUT_DYNALITE = {"dynalite": "motoserver"}

_table_numbers = itertools.count(1)


# --- dynalite ----------------------------------------------------------------------------------


def _install_dynalite() -> None:
    """`npm ci` from the committed lock file when node_modules lacks dynalite (a clean clone
    where the Makefile has not done it yet)."""
    if DYNALITE_PACKAGE.is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("node is installed but npm is not: cannot install dynalite (package.json)")
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0 or not DYNALITE_PACKAGE.is_file():
        pytest.fail(f"npm ci failed (exit {result.returncode}):\n{result.stderr[-2000:]}")


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[str]:
    """A dynalite server on a free loopback port for the whole run; its URL."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the dynalite backend (serialized writes) needs it")
    _install_dynalite()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [node, str(DYNALITE_SERVER)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 15)
            line = process.stdout.readline() if ready else b""
            if not line.strip().isdigit():
                process.kill()
                process.wait(timeout=5)
                stderr.seek(0)
                pytest.fail(f"dynalite did not start: {stderr.read().decode(errors='replace')}")
            yield f"http://127.0.0.1:{int(line)}"
        finally:
            process.stdin.close()  # the server exits when its stdin closes
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            process.stdout.close()


@pytest.fixture(scope="session")
def motoserver_endpoint() -> Iterator[str]:
    """The local stack's embedded AWS endpoint on a free loopback port for the whole run."""
    from devserver.awsendpoint import EmbeddedAws

    aws = EmbeddedAws("127.0.0.1", 0).start()
    try:
        yield aws.url
    finally:
        aws.stop()


def create_dynalite_table(client: Any, table_name: str) -> None:
    """store.table.create_table, less what dynalite lacks (UpdateTimeToLive: the store never
    relies on TTL deletion anyway) and with a waiter that polls without pausing: dynalite turns
    a table ACTIVE a tick after creating it, and the default waiter would then sleep 20 s."""
    client.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", **TABLE_DEFINITION)
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 0, "MaxAttempts": 500}
    )


# --- Backends ----------------------------------------------------------------------------------


@dataclass
class Backend:
    """One backend under test: builds stores that share the table (if any) and the clock."""

    name: str
    clock: ManualClock
    client: Any = None  # the low-level DynamoDB client the stores use (None: no table)
    table_name: str | None = None
    settings: Settings = field(default_factory=Settings)
    boto_config: Config | None = None

    def store(self, settings: Settings | None = None) -> SessionStore:
        settings = settings or self.settings
        if self.table_name is None:
            return InMemorySessionStore(settings, self.clock)
        return DynamoDBSessionStore(self.table_name, settings, self.clock, boto3_client=self.client)

    def raw_item(self, session_id: str) -> dict[str, Any] | None:
        """The stored DynamoDB item, read around the store."""
        assert self.client is not None
        response = self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": "META"}},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item


def _test_config(**overrides: Any) -> Config:
    return Config(
        # Hang bounds, not speed budgets (the machine may be loaded).
        connect_timeout=10,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 1},
        **overrides,
    )


@pytest.fixture(scope="module")
def moto_client() -> Iterator[Any]:
    """One moto account per test module (a client costs ~50 ms to build); a table per test."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION, config=_test_config())
        yield client
        client.close()


@pytest.fixture(scope="module")
def dynalite_client(dynalite_endpoint: str) -> Iterator[Any]:
    """A client the store builds itself: boto3 takes the endpoint from AWS_ENDPOINT_URL."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", dynalite_endpoint)
        store = DynamoDBSessionStore(
            "unused", Settings(), boto_config=_test_config(max_pool_connections=64)
        )
        client = store.client
    yield client
    client.close()


@pytest.fixture(scope="module")
def motoserver_client(motoserver_endpoint: str) -> Iterator[Any]:
    client = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=motoserver_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_test_config(max_pool_connections=64),
    )
    yield client
    client.close()


@contextmanager
def open_backend(
    name: str, clock: ManualClock, request: pytest.FixtureRequest
) -> Iterator[Backend]:
    if name == "memory":
        yield Backend(name, clock)
        return
    client = request.getfixturevalue(f"{name}_client")
    table_name = f"sessions-{next(_table_numbers)}"
    if name == "dynalite":
        create_dynalite_table(client, table_name)
    else:
        create_table(client, table_name)
    yield Backend(name, clock, client, table_name)


_BACKEND_SETS: Final = {
    "backend": ALL_BACKENDS,
    "dynamodb_backend": DYNAMODB_BACKENDS,
    "serializing_backend": SERIALIZING_BACKENDS,
}


def backends_for(fixture: str, *, transactions: bool) -> tuple[str, ...]:
    names = _BACKEND_SETS[fixture]
    if not transactions:
        return names
    return tuple(dict.fromkeys(WITHOUT_DYNALITE.get(name, name) for name in names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    transactions = metafunc.definition.get_closest_marker("transactions") is not None
    chosen = {
        name.strip()
        for mark in metafunc.definition.iter_markers("parametrize")
        for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
    }
    for fixture in _BACKEND_SETS:
        # A module's own fixture of the same name (test_user_store.py) brings its own params.
        definitions = metafunc._arg2fixturedefs.get(fixture, ())
        if definitions and definitions[-1].params is None and fixture not in chosen:
            names = backends_for(fixture, transactions=transactions)
            metafunc.parametrize(fixture, names, indirect=True, ids=names)


@pytest.fixture
def backend(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Backend]:
    with open_backend(request.param, clock, request) as opened:
        yield opened


@pytest.fixture
def dynamodb_backend(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Backend]:
    with open_backend(request.param, clock, request) as opened:
        yield opened


@pytest.fixture
def serializing_backend(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Backend]:
    with open_backend(request.param, clock, request) as opened:
        yield opened


@pytest.fixture(params=TRANSACTIONAL_SERIALIZING_BACKENDS)
def transactional_serializing_backend(
    request: pytest.FixtureRequest, clock: ManualClock
) -> Iterator[Backend]:
    with open_backend(request.param, clock, request) as opened:
        yield opened


@pytest.fixture
def store(backend: Backend) -> SessionStore:
    return backend.store()


# --- Observing and breaking requests -----------------------------------------------------------


@dataclass(frozen=True)
class Call:
    operation: str
    params: dict[str, Any]


class RequestLog:
    """Every DynamoDB request the client makes, as serialized for the wire. Clients are shared
    by a module's tests: use it as a context manager (or through the fixture) to unhook."""

    def __init__(self, client: Any) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._events = client.meta.events
        self._events.register("before-call.dynamodb", self._record)

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *_: object) -> None:
        self._events.unregister("before-call.dynamodb", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        with self._lock:
            self.calls.append(Call(model.name, json.loads(body)))

    @property
    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


@pytest.fixture
def request_log(dynamodb_backend: Backend) -> Iterator[RequestLog]:
    with RequestLog(dynamodb_backend.client) as log:
        yield log


Fault = Callable[[str], Any]


def service_error(code: str) -> Fault:
    """A modeled DynamoDB error response: botocore itself raises the matching ClientError."""

    def respond(_operation: str) -> Any:
        http = AWSResponse(
            url=f"https://dynamodb.{REGION}.amazonaws.com/", status_code=400, headers={}, raw=None
        )
        parsed = {
            "Error": {"Code": code, "Message": "injected fault"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return http, parsed

    respond.__name__ = code
    return respond


def raising(error: type[BotoCoreError]) -> Fault:
    """A transport error, as botocore raises it when the endpoint cannot be reached or read."""

    def respond(_operation: str) -> Any:
        raise error(endpoint_url=f"https://dynamodb.{REGION}.amazonaws.com/")

    respond.__name__ = error.__name__
    return respond


class FaultInjector:
    """Makes the chosen operations fail before they reach the table."""

    def __init__(self, client: Any) -> None:
        self.operations: frozenset[str] = frozenset()
        self.fault: Fault | None = None
        self.skip = 0
        self.injected = 0
        self._events = client.meta.events
        self._events.register("before-call.dynamodb", self._maybe_fail)

    def close(self) -> None:
        self._events.unregister("before-call.dynamodb", self._maybe_fail)

    def fail(self, fault: Fault, *operations: str, skip: int = 0) -> None:
        """From now on, fail ``operations`` (after letting ``skip`` of them through)."""
        self.fault, self.operations, self.skip = fault, frozenset(operations), skip

    def clear(self) -> None:
        self.fault, self.operations = None, frozenset()

    def _maybe_fail(self, model: Any, **_: Any) -> Any:
        if self.fault is None or model.name not in self.operations:
            return None
        if self.skip > 0:
            self.skip -= 1
            return None
        self.injected += 1
        return self.fault(model.name)


@pytest.fixture
def faults(dynamodb_backend: Backend) -> Iterator[FaultInjector]:
    injector = FaultInjector(dynamodb_backend.client)
    yield injector
    injector.close()


def settings_with(**overrides: Any) -> Settings:
    return replace(Settings(), **overrides)
