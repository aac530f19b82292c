"""The login-store contract, run against the in-memory and the DynamoDB (moto) backends.

A login reads once (``look_up``: the user by normalized name and every rate-limit counter) and
writes once (``record_success``: conditional counter increments plus the session, all or
nothing; ``record_failure``: unconditional increments). The contract tests below run on both
backends and assert observable state only: counters read back through the rate limiter's public
API, sessions through the session store, users through the user service. The DynamoDB-only tests
then pin what only that backend can show: the round trips, their parameters, fault handling,
transaction retries and BatchGetItem's unprocessed keys.

Time is a ManualClock; nothing sleeps. Passwords and ids are generated at test time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest

from tests.concurrency import run_at_once
from tests.contract._user_fixtures import (
    FAULTS,
    TABLE_NAME,
    FaultInjector,
    ParamRecorder,
    RecordingRevoker,
    fast_hasher,
    fresh_table,
    scan_items,
    transaction_canceled,
)
from tokencore.awsclient import LazyClient, batch_get_items
from tokencore.clock import ManualClock
from tokencore.config import RateLimit, Settings
from tokencore.errors import RateLimited, SessionNotFound, StoreConflict, StoreUnavailable
from tokencore.logins import (
    ComposedLoginStore,
    DynamoDBLoginStore,
    LoginStore,
    login_store_for,
)
from tokencore.ratelimit import (
    SCOPE_LOGIN_IP,
    SCOPE_LOGIN_USER,
    DynamoDBRateLimiter,
    InMemoryRateLimiter,
    RateLimiter,
)
from tokencore.ratelimit.base import RateWindow
from tokencore.sessions import DynamoDBSessionStore, InMemorySessionStore, SessionStore
from tokencore.sessions.base import Session, new_jti
from tokencore.users import DynamoDBUserStore, InMemoryUserStore, User, UserService, UserStore

WINDOW_START = 1_800_000_000.0  # ManualClock's default; a multiple of 60 and of 300
IP = "198.51.100.7"
USERNAME = "alice"
SETTINGS = Settings.from_env({})
IP_LIMIT = RateLimit(100, 300)
USER_LIMIT = RateLimit(10, 300)
EXPECTED_STORE = {"memory": ComposedLoginStore, "dynamodb": DynamoDBLoginStore}


@dataclass
class Backend:
    """One backend under test: the login store and the three stores it is made of."""

    name: str
    logins: LoginStore
    users: UserService
    rate_limiter: RateLimiter
    sessions: SessionStore
    clock: ManualClock
    client: Any  # the moto DynamoDB client, None for the memory backend

    def windows(
        self,
        ip_limit: RateLimit = IP_LIMIT,
        user_limit: RateLimit = USER_LIMIT,
        *,
        ip: str = IP,
        username: str = USERNAME,
    ) -> list[RateWindow]:
        """A login's windows, in the service's order: the source address first."""
        return [
            self.rate_limiter.window(SCOPE_LOGIN_IP, ip, ip_limit),
            self.rate_limiter.window(SCOPE_LOGIN_USER, username, user_limit),
        ]

    def create_user(self, username: str = USERNAME) -> User:
        return self.users.create_user(username, secrets.token_urlsafe(16))

    def new_session(self, user: User) -> Session:
        return self.sessions.new_session(user.user_id, source_ip=IP)

    def count(self, window: RateWindow) -> int:
        """The window's counter, read through the public API: every limit on the same scope,
        key and window start shares one counter, which is full under limit n iff it holds at
        least n."""
        for held in range(100):
            probe = replace(window, limit=RateLimit(held + 1, window.limit.window_seconds))
            if self.rate_limiter.full_window([probe]) is None:
                return held
        raise AssertionError("counter beyond what these tests write")

    def counts(self, windows: list[RateWindow]) -> list[int]:
        return [self.count(w) for w in windows]

    def stored(self, session: Session) -> Session | None:
        try:
            return self.sessions.get_session(session.session_id, active_only=False)
        except SessionNotFound:
            return None


def _backend(
    name: str,
    clock: ManualClock,
    users: UserStore,
    rate_limiter: RateLimiter,
    sessions: SessionStore,
    client: Any,
) -> Backend:
    logins = login_store_for(users, rate_limiter, sessions)
    assert type(logins) is EXPECTED_STORE[name]
    service = UserService(users, RecordingRevoker(), clock, hasher=fast_hasher())
    return Backend(name, logins, service, rate_limiter, sessions, clock, client)


def _build(name: str, clock: ManualClock, moto_client: Any) -> Iterator[Backend]:
    if name == "memory":
        yield _backend(
            name,
            clock,
            InMemoryUserStore(),
            InMemoryRateLimiter(clock),
            InMemorySessionStore(SETTINGS, clock),
            None,
        )
        return
    with fresh_table(moto_client) as client:
        yield _backend(
            name,
            clock,
            DynamoDBUserStore(TABLE_NAME, clock, boto3_client=client),
            DynamoDBRateLimiter(TABLE_NAME, clock, boto3_client=client),
            DynamoDBSessionStore(TABLE_NAME, SETTINGS, clock, boto3_client=client),
            client,
        )


class RecordingSession:
    """A boto3 session that notes every client built from it."""

    def __init__(self) -> None:
        self._session = boto3.session.Session(region_name="us-east-1")
        self.clients: list[str] = []

    def client(self, service: str, **kwargs: Any) -> Any:
        self.clients.append(service)
        return self._session.client(service, **kwargs)


def test_the_stores_build_their_clients_from_an_injected_boto3_session(
    clock: ManualClock, moto_client: Any
) -> None:
    """Powertools-style injection: boto3_client, boto3_session or boto_config, for every store."""
    session = RecordingSession()
    with fresh_table(moto_client):
        backend = _backend(
            "dynamodb",
            clock,
            DynamoDBUserStore(TABLE_NAME, clock, boto3_session=session),
            DynamoDBRateLimiter(TABLE_NAME, clock, boto3_session=session),
            DynamoDBSessionStore(TABLE_NAME, SETTINGS, clock, boto3_session=session),
            None,
        )
        assert session.clients == []  # built on first use, not at construction
        alice = backend.create_user()
        windows = backend.windows()
        assert backend.logins.look_up(USERNAME, windows) == alice
        backend.logins.record_success(windows, backend.new_session(alice))
        assert backend.counts(windows) == [1, 1]
    assert session.clients == ["dynamodb"] * 3  # one client per store, from our session


@pytest.fixture(params=["memory", "dynamodb"])
def backend(
    request: pytest.FixtureRequest, clock: ManualClock, moto_client: Any
) -> Iterator[Backend]:
    yield from _build(request.param, clock, moto_client)


@pytest.fixture
def dynamo(clock: ManualClock, moto_client: Any) -> Iterator[Backend]:
    """The DynamoDB backend alone, for what only it can show."""
    yield from _build("dynamodb", clock, moto_client)


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- look_up ---------------------------------------------------------------------------------


def test_look_up_finds_the_user_by_normalized_name_and_nobody_else(backend: Backend) -> None:
    alice = backend.create_user("Alice")
    windows = backend.windows()

    assert backend.logins.look_up("alice", windows) == backend.users.get_user(alice.user_id)
    assert backend.logins.look_up("bob", windows) is None
    assert backend.logins.look_up(None, windows) is None
    # The name must already be normalized: another form of it finds nobody.
    assert backend.logins.look_up("ALICE", windows) is None


def test_look_up_sees_the_current_profile(backend: Backend) -> None:
    alice = backend.create_user()
    backend.users.set_roles(alice.user_id, ["admin"])
    backend.users.disable_user(alice.user_id)

    found = backend.logins.look_up(USERNAME, backend.windows())

    assert found is not None
    assert found.roles == ("admin",)
    assert found.disabled is True  # handed out: the password check refuses it
    assert found == backend.users.get_user(alice.user_id, include_disabled=True)


def test_look_up_writes_nothing(backend: Backend) -> None:
    backend.create_user()
    windows = backend.windows(RateLimit(3, 60), RateLimit(3, 60))
    before = scan_items(backend.client) if backend.client is not None else None

    for _ in range(5):  # more look_ups than the limit: none of them counts
        assert backend.logins.look_up(USERNAME, windows) is not None
        assert backend.logins.look_up(None, windows) is None

    assert backend.counts(windows) == [0, 0]
    if backend.client is not None:
        assert scan_items(backend.client) == before


def test_a_full_window_refuses_in_look_up_until_the_window_ends(backend: Backend) -> None:
    backend.create_user()
    backend.clock.set(WINDOW_START + 10)
    ip_window, user_window = windows = backend.windows(RateLimit(3, 60), RateLimit(2, 300))

    backend.logins.record_failure([user_window])
    assert backend.logins.look_up(USERNAME, windows) is not None  # one below the limit

    backend.logins.record_failure([user_window])
    with pytest.raises(RateLimited) as caught:
        backend.logins.look_up(USERNAME, windows)
    assert caught.value.scope == SCOPE_LOGIN_USER
    assert caught.value.retry_after_seconds == 290
    with pytest.raises(RateLimited):  # an unknown name is refused alike
        backend.logins.look_up(None, windows)

    for _ in range(3):
        backend.logins.record_failure([ip_window])
    with pytest.raises(RateLimited) as caught:  # both full: the first in order is named
        backend.logins.look_up(USERNAME, windows)
    assert caught.value.scope == SCOPE_LOGIN_IP
    assert caught.value.retry_after_seconds == 50
    assert "alice" not in str(caught.value)
    assert IP not in str(caught.value)

    backend.clock.set(WINDOW_START + 60)  # the next minute: the address's window reopens
    with pytest.raises(RateLimited) as caught:
        backend.logins.look_up(USERNAME, backend.windows(RateLimit(3, 60), RateLimit(2, 300)))
    assert caught.value.scope == SCOPE_LOGIN_USER
    assert caught.value.retry_after_seconds == 240

    backend.clock.set(WINDOW_START + 300)  # both windows are new
    assert backend.logins.look_up(USERNAME, backend.windows(RateLimit(3, 60), RateLimit(2, 300)))


# --- record_success --------------------------------------------------------------------------


def test_record_success_counts_every_window_and_stores_the_session(backend: Backend) -> None:
    alice = backend.create_user()
    windows = backend.windows()
    session = backend.new_session(alice)

    backend.logins.record_success(windows, session)

    assert backend.counts(windows) == [1, 1]
    assert backend.sessions.get_session(session.session_id) == session  # active
    assert backend.sessions.list_sessions(alice.user_id) == [session]


def test_limit_successes_fill_the_window(backend: Backend) -> None:
    alice = backend.create_user()
    windows = backend.windows(RateLimit(100, 300), RateLimit(3, 300))

    for _ in range(3):
        assert backend.logins.look_up(USERNAME, windows) == alice
        backend.logins.record_success(windows, backend.new_session(alice))

    assert backend.counts(windows) == [3, 3]
    with pytest.raises(RateLimited) as caught:
        backend.logins.look_up(USERNAME, windows)
    assert caught.value.scope == SCOPE_LOGIN_USER
    assert len(backend.sessions.list_sessions(alice.user_id)) == 3


@pytest.mark.parametrize("filled", [SCOPE_LOGIN_IP, SCOPE_LOGIN_USER])
def test_record_success_into_a_window_filled_since_look_up_writes_nothing(
    backend: Backend, filled: str
) -> None:
    alice = backend.create_user()
    backend.clock.set(WINDOW_START + 10)
    windows = backend.windows(RateLimit(2, 60), RateLimit(2, 300))
    full_index = [w.scope for w in windows].index(filled)
    assert backend.logins.look_up(USERNAME, windows) == alice

    # Another login fills one window between this one's look_up and its write: one success
    # through both windows, then a failure through the window being filled.
    backend.logins.record_success(windows, backend.new_session(alice))
    backend.logins.record_failure([windows[full_index]])
    counts_before = backend.counts(windows)
    before = scan_items(backend.client) if backend.client is not None else None
    late = backend.new_session(alice)

    with pytest.raises(RateLimited) as caught:
        backend.logins.record_success(windows, late)

    assert caught.value.scope == filled
    assert caught.value.retry_after_seconds == windows[full_index].retry_after_seconds
    assert backend.stored(late) is None
    assert backend.counts(windows) == counts_before  # the open window was not counted either
    if backend.client is not None:
        assert scan_items(backend.client) == before


def test_record_success_with_a_taken_session_id_is_a_conflict(backend: Backend) -> None:
    alice = backend.create_user()
    bob = backend.create_user("bob")
    windows = backend.windows()
    first = backend.new_session(alice)
    backend.logins.record_success(windows, first)

    for colliding in (
        replace(first, user_id=bob.user_id),
        replace(first, current_jti=new_jti()),
    ):
        with pytest.raises(StoreConflict):
            backend.logins.record_success(windows, colliding)

    assert backend.sessions.get_session(first.session_id) == first  # the first one stands
    if backend.name == "dynamodb":
        # One transaction: the refused Put took its counter increments with it.
        assert backend.counts(windows) == [1, 1]
    else:
        # The composed store counts first and inserts second (composed.py): a refused insert
        # leaves its attempts counted, which errs on the closed side.
        assert backend.counts(windows) == [3, 3]


# --- record_failure --------------------------------------------------------------------------


def test_record_failure_counts_past_the_limit(backend: Backend) -> None:
    windows = backend.windows(RateLimit(2, 60), RateLimit(2, 60))

    for _ in range(5):
        backend.logins.record_failure(windows)

    assert backend.counts(windows) == [5, 5]
    with pytest.raises(RateLimited):
        backend.logins.look_up(USERNAME, windows)


def test_windows_are_independent_per_key_and_scope(backend: Backend) -> None:
    limit = RateLimit(2, 60)
    windows = backend.windows(limit, limit)
    for _ in range(2):
        backend.logins.record_failure(windows)

    other_ip = backend.windows(limit, limit, ip="203.0.113.9", username="bob")
    same_keys_swapped_scopes = [
        backend.rate_limiter.window(SCOPE_LOGIN_IP, USERNAME, limit),
        backend.rate_limiter.window(SCOPE_LOGIN_USER, IP, limit),
    ]
    assert backend.counts(windows) == [2, 2]
    assert backend.counts(other_ip) == [0, 0]
    assert backend.counts(same_keys_swapped_scopes) == [0, 0]
    assert backend.logins.look_up(None, other_ip) is None
    assert backend.logins.look_up(None, same_keys_swapped_scopes) is None


def test_a_new_window_starts_afresh(backend: Backend) -> None:
    alice = backend.create_user()
    backend.clock.set(WINDOW_START + 59)
    windows = backend.windows(RateLimit(1, 60), RateLimit(1, 60))
    backend.logins.record_failure(windows)
    with pytest.raises(RateLimited):
        backend.logins.look_up(USERNAME, windows)

    backend.clock.set(WINDOW_START + 60)
    fresh = backend.windows(RateLimit(1, 60), RateLimit(1, 60))
    assert backend.counts(fresh) == [0, 0]
    assert backend.logins.look_up(USERNAME, fresh) == alice
    backend.logins.record_success(fresh, backend.new_session(alice))
    assert backend.counts(fresh) == [1, 1]
    assert backend.counts(windows) == [1, 1]  # the old window kept its own count


def test_no_windows_means_nothing_to_check_or_count(backend: Backend) -> None:
    """The rate limiter accepts an empty list of windows (full_window, admit, count); so does
    every login store, without an empty request to DynamoDB."""
    alice = backend.create_user()
    session = backend.new_session(alice)

    assert backend.logins.look_up(USERNAME, []) == alice
    backend.logins.record_success([], session)
    assert backend.sessions.get_session(session.session_id) == session
    backend.logins.record_failure([])
    assert backend.logins.look_up(None, []) is None


# --- concurrency (memory: one process's threads) ---------------------------------------------


def test_concurrent_logins_take_exactly_the_free_slots(clock: ManualClock) -> None:
    backend = next(_build("memory", clock, None))
    alice = backend.create_user()
    windows = [backend.rate_limiter.window(SCOPE_LOGIN_USER, USERNAME, RateLimit(5, 60))]

    def login() -> bool:
        session = backend.new_session(alice)
        try:
            backend.logins.look_up(USERNAME, windows)
            backend.logins.record_success(windows, session)
        except RateLimited:
            return False
        return True

    outcomes = run_at_once(20, login)
    assert outcomes.count(True) == 5
    assert outcomes.count(False) == 15
    assert len(backend.sessions.list_sessions(alice.user_id)) == 5
    assert backend.counts(windows) == [5]


# --- the factory -----------------------------------------------------------------------------


def test_the_factory_composes_stores_on_different_tables(clock: ManualClock) -> None:
    logins = login_store_for(
        DynamoDBUserStore(TABLE_NAME, clock),
        DynamoDBRateLimiter("another-table", clock),
        DynamoDBSessionStore(TABLE_NAME, SETTINGS, clock),
    )
    assert type(logins) is ComposedLoginStore
    mixed = login_store_for(
        InMemoryUserStore(),
        DynamoDBRateLimiter(TABLE_NAME, clock),
        DynamoDBSessionStore(TABLE_NAME, SETTINGS, clock),
    )
    assert type(mixed) is ComposedLoginStore


# --- DynamoDB: round trips -------------------------------------------------------------------


class OperationLog:
    """The name of every DynamoDB operation the client sends (botocore's before-call)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.operations: list[str] = []

    def __call__(self, model: Any, **kwargs: Any) -> None:
        self.operations.append(model.name)

    def __enter__(self) -> OperationLog:
        self.client.meta.events.register("before-call.dynamodb", self, unique_id=f"ops-{id(self)}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister("before-call.dynamodb", unique_id=f"ops-{id(self)}")


def _sorted_keys(keys: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(key, sort_keys=True) for key in keys)


def _expected_window_keys(start: int = int(WINDOW_START)) -> list[dict[str, Any]]:
    return [
        {"pk": {"S": f"RATE#login_ip#{_sha256(IP)}"}, "sk": {"S": f"WINDOW#{start}"}},
        {"pk": {"S": f"RATE#login_user#{_sha256(USERNAME)}"}, "sk": {"S": f"WINDOW#{start}"}},
    ]


CLAIM_KEY = {"pk": {"S": f"USERNAME#{USERNAME}"}, "sk": {"S": "USERNAME"}}


def test_look_up_is_one_consistent_batch_get(dynamo: Backend) -> None:
    dynamo.create_user()
    windows = dynamo.windows()

    with OperationLog(dynamo.client) as log, ParamRecorder(dynamo.client, "BatchGetItem") as rec:
        dynamo.logins.look_up(USERNAME, windows)
        dynamo.logins.look_up(None, windows)

    assert log.operations == ["BatchGetItem", "BatchGetItem"]
    with_name, without_name = (params["RequestItems"] for params in rec.params)
    assert set(with_name) == set(without_name) == {TABLE_NAME}
    assert with_name[TABLE_NAME]["ConsistentRead"] is True
    assert without_name[TABLE_NAME]["ConsistentRead"] is True
    assert _sorted_keys(with_name[TABLE_NAME]["Keys"]) == _sorted_keys(
        [*_expected_window_keys(), CLAIM_KEY]
    )
    assert _sorted_keys(without_name[TABLE_NAME]["Keys"]) == _sorted_keys(_expected_window_keys())


def test_record_success_is_one_transaction(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    session = dynamo.new_session(alice)

    with (
        OperationLog(dynamo.client) as log,
        ParamRecorder(dynamo.client, "TransactWriteItems") as rec,
    ):
        dynamo.logins.record_success(windows, session)

    assert log.operations == ["TransactWriteItems"]
    (params,) = rec.params
    token = params["ClientRequestToken"]
    assert token.startswith(session.session_id)
    assert len(token) <= 36  # DynamoDB's limit (moto does not check it)
    actions = params["TransactItems"]
    assert len(actions) == len(windows) + 1
    updates = [action["Update"] for action in actions[: len(windows)]]
    assert _sorted_keys([u["Key"] for u in updates]) == _sorted_keys(_expected_window_keys())
    assert all("ConditionExpression" in u for u in updates)
    assert [u["ExpressionAttributeValues"][":limit"] for u in updates] == [
        {"N": "100"},
        {"N": "10"},
    ]
    put = actions[-1]["Put"]
    assert put["Item"]["pk"] == {"S": f"SESSION#{session.session_id}"}
    assert "ConditionExpression" in put


def test_record_failure_is_one_transaction_of_unconditional_updates(dynamo: Backend) -> None:
    windows = dynamo.windows()

    with (
        OperationLog(dynamo.client) as log,
        ParamRecorder(dynamo.client, "TransactWriteItems") as rec,
    ):
        dynamo.logins.record_failure(windows)

    assert log.operations == ["TransactWriteItems"]
    (params,) = rec.params
    assert 1 <= len(params["ClientRequestToken"]) <= 36
    actions = params["TransactItems"]
    assert [set(action) for action in actions] == [{"Update"}, {"Update"}]
    assert _sorted_keys([a["Update"]["Key"] for a in actions]) == _sorted_keys(
        _expected_window_keys()
    )
    assert not any("ConditionExpression" in a["Update"] for a in actions)


def test_the_items_written_hold_digests_never_the_keys(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    dynamo.logins.record_success(windows, dynamo.new_session(alice))
    dynamo.logins.record_failure(windows)

    counters = [item for item in scan_items(dynamo.client) if item["pk"]["S"].startswith("RATE#")]

    assert _sorted_keys([{"pk": c["pk"], "sk": c["sk"]} for c in counters]) == _sorted_keys(
        _expected_window_keys()
    )
    assert all(c["count"] == {"N": "2"} for c in counters)
    assert all(c["expires_at"] == {"N": str(int(WINDOW_START) + 300 + 60)} for c in counters)
    assert IP not in json.dumps(counters)


# --- DynamoDB: faults ------------------------------------------------------------------------


def _attempts(
    dynamo: Backend, windows: list[RateWindow], session: Session
) -> dict[str, tuple[str, Callable[[], object]]]:
    """Each call of the login store, with the operation it sends."""
    return {
        "look_up": ("BatchGetItem", lambda: dynamo.logins.look_up(USERNAME, windows)),
        "record_success": (
            "TransactWriteItems",
            lambda: dynamo.logins.record_success(windows, session),
        ),
        "record_failure": ("TransactWriteItems", lambda: dynamo.logins.record_failure(windows)),
    }


@pytest.mark.parametrize("call", ["look_up", "record_success", "record_failure"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_store_fault_fails_closed_and_names_nothing(
    dynamo: Backend, fault: str, call: str
) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    dynamo.logins.record_success(windows, dynamo.new_session(alice))
    session = dynamo.new_session(alice)
    operation, attempt = _attempts(dynamo, windows, session)[call]
    session_ids = [s.session_id for s in dynamo.sessions.list_sessions(alice.user_id)]
    session_ids.append(session.session_id)
    before = scan_items(dynamo.client)

    with (
        FaultInjector(dynamo.client, operation, FAULTS[fault](operation)) as injector,
        pytest.raises(StoreUnavailable) as caught,
    ):
        attempt()

    assert injector.calls == 1  # a fault is not retried
    assert caught.value.__cause__ is not None
    assert scan_items(dynamo.client) == before
    message = str(caught.value)
    assert message.startswith("login store: ")
    secrets_in_play = [USERNAME, IP, *session_ids, *(w.key_digest for w in windows)]
    assert not [value for value in secrets_in_play if value in message]
    attempt()  # recovers with the store


def test_an_unexpected_cancellation_reason_is_unavailable(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    error = transaction_canceled(["ThrottlingError", "None", "None"])

    with (
        FaultInjector(dynamo.client, "TransactWriteItems", error) as injector,
        pytest.raises(StoreUnavailable),
    ):
        dynamo.logins.record_success(windows, dynamo.new_session(alice))
    assert injector.calls == 1
    assert dynamo.counts(windows) == [0, 0]


# --- DynamoDB: transaction cancellations -----------------------------------------------------


class FailFirst:
    """Raise a fresh ``error()`` from the first ``times`` calls of one DynamoDB operation
    (botocore's before-call event, before any request leaves), then let the real calls
    through."""

    def __init__(
        self, client: Any, operation: str, error: Callable[[], Exception], times: int
    ) -> None:
        self.client = client
        self.event = f"before-call.dynamodb.{operation}"
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()

    def __enter__(self) -> FailFirst:
        self.client.meta.events.register(self.event, self, unique_id=f"first-{id(self)}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"first-{id(self)}")


def _conflict() -> Exception:
    error: Exception = transaction_canceled(["TransactionConflict", "None", "None"])
    return error


def test_record_success_retries_a_transaction_conflict(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    session = dynamo.new_session(alice)

    with (
        FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=1) as injector,
        ParamRecorder(dynamo.client, "TransactWriteItems") as rec,
    ):
        dynamo.logins.record_success(windows, session)

    assert injector.calls == 2
    tokens = [params["ClientRequestToken"] for params in rec.params]
    assert len(tokens) == len(set(tokens)) == 2
    assert all(token.startswith(session.session_id) for token in tokens)
    assert dynamo.sessions.get_session(session.session_id) == session
    assert dynamo.counts(windows) == [1, 1]  # counted once


def test_record_success_gives_up_after_three_conflicts(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    session = dynamo.new_session(alice)
    before = scan_items(dynamo.client)

    with (
        FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=99) as injector,
        ParamRecorder(dynamo.client, "TransactWriteItems") as rec,
        pytest.raises(StoreConflict),
    ):
        dynamo.logins.record_success(windows, session)

    assert injector.calls == 3
    assert len({params["ClientRequestToken"] for params in rec.params}) == 3
    assert scan_items(dynamo.client) == before
    assert dynamo.stored(session) is None


def test_record_failure_retries_a_transaction_conflict_then_gives_up(dynamo: Backend) -> None:
    windows = dynamo.windows()

    with FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=2) as injector:
        dynamo.logins.record_failure(windows)
    assert injector.calls == 3
    assert dynamo.counts(windows) == [1, 1]

    with (
        FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=99) as injector,
        pytest.raises(StoreConflict),
    ):
        dynamo.logins.record_failure(windows)
    assert injector.calls == 3
    assert dynamo.counts(windows) == [1, 1]


@pytest.mark.parametrize(
    ("reasons", "scope"),
    [
        (["ConditionalCheckFailed", "None", "None"], SCOPE_LOGIN_IP),
        (["None", "ConditionalCheckFailed", "None"], SCOPE_LOGIN_USER),
        (["ConditionalCheckFailed", "ConditionalCheckFailed", "None"], SCOPE_LOGIN_IP),
        (["TransactionConflict", "ConditionalCheckFailed", "None"], SCOPE_LOGIN_USER),
    ],
)
def test_a_refused_counter_is_that_windows_refusal(
    dynamo: Backend, reasons: list[str], scope: str
) -> None:
    alice = dynamo.create_user()
    dynamo.clock.set(WINDOW_START + 10)
    windows = dynamo.windows(RateLimit(3, 60), RateLimit(2, 300))
    session = dynamo.new_session(alice)

    with (
        FaultInjector(dynamo.client, "TransactWriteItems", transaction_canceled(reasons)) as inj,
        pytest.raises(RateLimited) as caught,
    ):
        dynamo.logins.record_success(windows, session)

    assert inj.calls == 1  # a refused condition is not retried
    assert caught.value.scope == scope
    assert caught.value.retry_after_seconds == {SCOPE_LOGIN_IP: 50, SCOPE_LOGIN_USER: 290}[scope]
    assert dynamo.stored(session) is None


def test_a_refused_session_put_is_a_conflict(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    reasons = ["None"] * len(windows) + ["ConditionalCheckFailed"]

    with (
        FaultInjector(dynamo.client, "TransactWriteItems", transaction_canceled(reasons)) as inj,
        pytest.raises(StoreConflict) as caught,
    ):
        dynamo.logins.record_success(windows, dynamo.new_session(alice))

    assert inj.calls == 1
    assert caught.value.message == "session id collision"
    assert dynamo.counts(windows) == [0, 0]


# --- DynamoDB: BatchGetItem's unprocessed keys -----------------------------------------------


class ProcessLater:
    """Moves the username claim from a BatchGetItem response into its UnprocessedKeys, for
    the first ``times`` responses (botocore's after-call event: the parsed response)."""

    def __init__(self, client: Any, times: int) -> None:
        self.client = client
        self.times = times
        self.calls = 0

    def __call__(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        self.calls += 1
        if self.calls > self.times:
            return
        items = parsed["Responses"][TABLE_NAME]
        claims = [item for item in items if item["pk"] == CLAIM_KEY["pk"]]
        parsed["Responses"][TABLE_NAME] = [item for item in items if item not in claims]
        parsed["UnprocessedKeys"] = {TABLE_NAME: {"Keys": [CLAIM_KEY], "ConsistentRead": True}}

    def __enter__(self) -> ProcessLater:
        self.client.meta.events.register(
            "after-call.dynamodb.BatchGetItem", self, unique_id=f"later-{id(self)}"
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister(
            "after-call.dynamodb.BatchGetItem", unique_id=f"later-{id(self)}"
        )


def test_look_up_reads_unprocessed_keys_again(dynamo: Backend) -> None:
    alice = dynamo.create_user()
    windows = dynamo.windows()
    dynamo.logins.record_failure(windows)

    with (
        ProcessLater(dynamo.client, times=1) as later,
        ParamRecorder(dynamo.client, "BatchGetItem") as rec,
    ):
        assert dynamo.logins.look_up(USERNAME, windows) == alice

    assert later.calls == 2
    second = rec.params[1]["RequestItems"][TABLE_NAME]
    assert second == {"Keys": [CLAIM_KEY], "ConsistentRead": True}


def test_look_up_fails_closed_when_keys_stay_unprocessed(dynamo: Backend) -> None:
    dynamo.create_user()

    with ProcessLater(dynamo.client, times=99) as later, pytest.raises(StoreUnavailable):
        dynamo.logins.look_up(USERNAME, dynamo.windows())
    assert later.calls == 3


class ScriptedDynamoDB:
    """A stand-in DynamoDB client whose BatchGetItem answers from a script (the last answer
    repeats)."""

    def __init__(self, *responses: dict[str, Any]) -> None:
        self.responses = responses
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        return self.responses[min(len(self.requests), len(self.responses)) - 1]


def _key(name: str) -> dict[str, Any]:
    return {"pk": {"S": f"K#{name}"}, "sk": {"S": "S"}}


def _item(name: str) -> dict[str, Any]:
    return {**_key(name), "value": {"S": name}}


def _responses(*names: str, unprocessed: tuple[str, ...] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"Responses": {"t": [_item(n) for n in names]}}
    if unprocessed:
        response["UnprocessedKeys"] = {"t": {"Keys": [_key(n) for n in unprocessed]}}
    return response


def test_batch_get_items_orders_results_and_finishes_unprocessed_keys() -> None:
    fake = ScriptedDynamoDB(
        _responses("c", unprocessed=("a",)),  # out of order, one key left over
        _responses("a"),
    )

    found = batch_get_items(
        LazyClient("dynamodb", fake), "t", [_key("a"), _key("b"), _key("c")], what="test"
    )

    assert found == [_item("a"), None, _item("c")]
    assert [r["RequestItems"]["t"]["Keys"] for r in fake.requests] == [
        [_key("a"), _key("b"), _key("c")],
        [_key("a")],
    ]
    assert all(r["RequestItems"]["t"]["ConsistentRead"] is True for r in fake.requests)


def test_batch_get_items_gives_up_after_three_rounds() -> None:
    fake = ScriptedDynamoDB(_responses(unprocessed=("a",)))

    with pytest.raises(StoreUnavailable) as caught:
        batch_get_items(LazyClient("dynamodb", fake), "t", [_key("a")], what="test")

    assert len(fake.requests) == 3
    assert "K#a" not in str(caught.value)


def test_batch_get_items_refuses_an_item_it_did_not_ask_for() -> None:
    fake = ScriptedDynamoDB(_responses("a", "intruder"))

    with pytest.raises(StoreUnavailable) as caught:
        batch_get_items(LazyClient("dynamodb", fake), "t", [_key("a")], what="test")

    assert "intruder" not in str(caught.value)
