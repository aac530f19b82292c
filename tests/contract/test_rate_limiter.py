"""The rate-limiter contract, run against the in-memory and the DynamoDB (moto) backends."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tests.contract._user_fixtures import (
    FAULTS,
    FailFirst,
    FaultInjector,
    ParamRecorder,
    fresh_table,
    items_as_text,
    scan_items,
    transaction_canceled,
)
from tests.contract._user_fixtures import TABLE_NAME as TABLE
from tokencore.config import RateLimit, Settings
from tokencore.errors import (
    ConfigError,
    InvalidRequest,
    RateLimited,
    StoreConflict,
    StoreUnavailable,
)
from tokencore.ratelimit import (
    SCOPE_LOGIN_IP,
    SCOPE_LOGIN_USER,
    SCOPE_REFRESH_USER,
    DynamoDBRateLimiter,
    InMemoryRateLimiter,
    RateLimiter,
)
from tokencore.ratelimit import memory as memory_module
from tokencore.ratelimit.base import RateWindow

WINDOW_START = 1_800_000_000.0  # ManualClock's default; a multiple of 60 and of 300
FIVE_PER_MINUTE = RateLimit(5, 60)


@dataclass
class Limiter:
    name: str
    limiter: RateLimiter
    clock: ManualClock
    client: Any


def _build(name: str, clock: ManualClock, moto_client: Any) -> Iterator[Limiter]:
    if name == "memory":
        yield Limiter(name, InMemoryRateLimiter(clock), clock, None)
        return
    with fresh_table(moto_client) as client:
        yield Limiter(name, DynamoDBRateLimiter(TABLE, clock, boto3_client=client), clock, client)


@pytest.fixture(params=["memory", "dynamodb"])
def rl(request: pytest.FixtureRequest, clock: ManualClock, moto_client: Any) -> Iterator[Limiter]:
    yield from _build(request.param, clock, moto_client)


@pytest.fixture
def dynamo(clock: ManualClock, moto_client: Any) -> Iterator[Limiter]:
    yield from _build("dynamodb", clock, moto_client)


def _allowed(limiter: RateLimiter, n: int, scope: str, key: str, limit: RateLimit) -> int:
    """How many of ``n`` hits pass."""
    passed = 0
    for _ in range(n):
        try:
            limiter.hit(scope, key, limit)
            passed += 1
        except RateLimited:
            pass
    return passed


# --- windows ---------------------------------------------------------------------------------


def test_nth_hit_passes_and_the_next_is_refused_until_the_window_ends(rl: Limiter) -> None:
    rl.clock.set(WINDOW_START + 10)
    for _ in range(5):
        rl.limiter.hit(SCOPE_REFRESH_USER, "user-1", FIVE_PER_MINUTE)

    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_REFRESH_USER, "user-1", FIVE_PER_MINUTE)
    assert caught.value.retry_after_seconds == 50
    assert caught.value.code == "rate_limited"

    rl.clock.advance(20)  # still the same window: still refused, and the wait shrinks
    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_REFRESH_USER, "user-1", FIVE_PER_MINUTE)
    assert caught.value.retry_after_seconds == 30

    rl.clock.set(WINDOW_START + 60)  # the next window starts afresh
    assert _allowed(rl.limiter, 6, SCOPE_REFRESH_USER, "user-1", FIVE_PER_MINUTE) == 5


def test_retry_after_rounds_up_and_is_at_least_one_second(rl: Limiter) -> None:
    rl.clock.set(WINDOW_START + 59.2)
    limit = RateLimit(1, 60)
    rl.limiter.hit(SCOPE_LOGIN_USER, "alice", limit)
    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_LOGIN_USER, "alice", limit)
    assert caught.value.retry_after_seconds == 1
    rl.clock.set(WINDOW_START + 0.5)  # a full window left, minus half a second: 60 s rounded up
    rl.limiter.hit(SCOPE_LOGIN_USER, "bob", limit)
    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_LOGIN_USER, "bob", limit)
    assert caught.value.retry_after_seconds == 60


def test_window_edges_are_exact(rl: Limiter) -> None:
    limit = RateLimit(2, 60)
    rl.clock.set(WINDOW_START + 59.999)
    assert _allowed(rl.limiter, 3, SCOPE_LOGIN_IP, "198.51.100.7", limit) == 2
    rl.clock.set(WINDOW_START + 60.0)  # the first instant of the next window
    assert _allowed(rl.limiter, 3, SCOPE_LOGIN_IP, "198.51.100.7", limit) == 2
    rl.clock.set(WINDOW_START + 119.0)
    assert _allowed(rl.limiter, 1, SCOPE_LOGIN_IP, "198.51.100.7", limit) == 0


def test_refused_hits_keep_counting_and_do_not_extend_the_window(rl: Limiter) -> None:
    limit = RateLimit(1, 60)
    rl.clock.set(WINDOW_START)
    assert _allowed(rl.limiter, 50, SCOPE_LOGIN_USER, "alice", limit) == 1
    rl.clock.set(WINDOW_START + 60)
    assert _allowed(rl.limiter, 1, SCOPE_LOGIN_USER, "alice", limit) == 1


def test_keys_scopes_and_windows_are_independent(rl: Limiter) -> None:
    limit = RateLimit(2, 60)
    assert _allowed(rl.limiter, 3, SCOPE_LOGIN_USER, "alice", limit) == 2
    assert _allowed(rl.limiter, 3, SCOPE_LOGIN_USER, "bob", limit) == 2
    assert _allowed(rl.limiter, 3, SCOPE_REFRESH_USER, "alice", limit) == 2
    assert _allowed(rl.limiter, 3, SCOPE_LOGIN_IP, "alice", limit) == 2
    assert _allowed(rl.limiter, 1, SCOPE_LOGIN_USER, "Alice", limit) == 1  # keys are exact


def test_the_configured_defaults(rl: Limiter) -> None:
    settings = Settings.from_env({})
    assert settings.login_rate_limit == RateLimit(10, 300)
    assert settings.login_ip_rate_limit == RateLimit(100, 300)
    assert settings.refresh_rate_limit == RateLimit(5, 60)
    rl.clock.set(WINDOW_START + 30)
    assert _allowed(rl.limiter, 11, SCOPE_LOGIN_USER, "alice", settings.login_rate_limit) == 10
    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_LOGIN_USER, "alice", settings.login_rate_limit)
    assert caught.value.retry_after_seconds == 270
    assert (
        _allowed(rl.limiter, 101, SCOPE_LOGIN_IP, "203.0.113.9", settings.login_ip_rate_limit)
        == 100
    )
    assert _allowed(rl.limiter, 6, SCOPE_REFRESH_USER, "user-1", settings.refresh_rate_limit) == 5


def test_the_refusal_names_no_key(rl: Limiter) -> None:
    limit = RateLimit(1, 60)
    rl.limiter.hit(SCOPE_LOGIN_IP, "192.0.2.44", limit)
    with pytest.raises(RateLimited) as caught:
        rl.limiter.hit(SCOPE_LOGIN_IP, "192.0.2.44", limit)
    assert "192.0.2.44" not in str(caught.value)


@pytest.mark.parametrize(
    ("scope", "key", "limit", "error"),
    [
        ("Login", "k", FIVE_PER_MINUTE, ConfigError),
        ("login#user", "k", FIVE_PER_MINUTE, ConfigError),
        ("", "k", FIVE_PER_MINUTE, ConfigError),
        (SCOPE_LOGIN_USER, "k", RateLimit(0, 60), ConfigError),
        (SCOPE_LOGIN_USER, "k", RateLimit(5, 0), ConfigError),
        (SCOPE_LOGIN_USER, "", FIVE_PER_MINUTE, InvalidRequest),
        (SCOPE_LOGIN_USER, "k" * 8193, FIVE_PER_MINUTE, InvalidRequest),
    ],
)
def test_bad_arguments_are_refused_before_counting(
    rl: Limiter, scope: str, key: str, limit: RateLimit, error: type[Exception]
) -> None:
    with pytest.raises(error):
        rl.limiter.hit(scope, key, limit)
    if rl.client is not None:
        assert scan_items(rl.client) == []


# --- admission: the limit is the write's condition (login) -------------------------------------


def _count(rl: Limiter, window: RateWindow) -> int:
    """The window's counter as stored (0 before its first write)."""
    if rl.client is None:
        assert isinstance(rl.limiter, InMemoryRateLimiter)
        return rl.limiter._counters.get((window.scope, window.key_digest, window.start), [0])[0]
    item = rl.client.get_item(
        TableName=TABLE, Key=DynamoDBRateLimiter.window_key(window), ConsistentRead=True
    ).get("Item")
    return 0 if item is None else int(item["count"]["N"])


def test_admit_takes_slots_until_the_window_is_full_then_counts_nothing(rl: Limiter) -> None:
    rl.clock.set(WINDOW_START + 15)
    window = rl.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(3, 60))
    for _ in range(3):
        rl.limiter.admit([window])
    for _ in range(4):
        with pytest.raises(RateLimited) as caught:
            rl.limiter.admit([window])
        assert caught.value.retry_after_seconds == 45
    assert _count(rl, window) == 3  # refused admissions wrote nothing
    rl.clock.advance(60)
    rl.limiter.admit([rl.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(3, 60))])


def test_admit_counts_all_windows_or_none(rl: Limiter) -> None:
    ip = rl.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = rl.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    rl.limiter.admit([ip, user])
    with pytest.raises(RateLimited) as caught:
        rl.limiter.admit([ip, user])
    assert caught.value.scope == SCOPE_LOGIN_USER
    # The refused attempt counted nowhere: the IP window still has two slots.
    assert [_count(rl, ip), _count(rl, user)] == [1, 1]
    other = rl.limiter.window(SCOPE_LOGIN_USER, "bob", RateLimit(5, 60))
    rl.limiter.admit([ip, other])
    rl.limiter.admit([ip, other])
    with pytest.raises(RateLimited) as caught:
        rl.limiter.admit([ip, other])
    assert caught.value.scope == SCOPE_LOGIN_IP  # the first full window, in order
    assert [_count(rl, ip), _count(rl, other)] == [3, 2]
    rl.limiter.admit([])  # nothing to take


def test_hit_and_admit_share_one_counter(rl: Limiter) -> None:
    limit = RateLimit(2, 60)
    window = rl.limiter.window(SCOPE_LOGIN_USER, "alice", limit)
    for _ in range(4):
        with contextlib.suppress(RateLimited):
            rl.limiter.hit(SCOPE_LOGIN_USER, "alice", limit)
    with pytest.raises(RateLimited):
        rl.limiter.admit([window])
    assert _count(rl, window) == 4  # refused hits count, refused admissions do not


def test_admit_of_one_window_is_one_conditional_update(dynamo: Limiter) -> None:
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    with ParamRecorder(dynamo.client, "UpdateItem") as recorder:
        dynamo.limiter.admit([user])
        with pytest.raises(RateLimited):
            dynamo.limiter.admit([user])
    assert [p["ConditionExpression"] for p in recorder.params] == [
        "attribute_not_exists(#count) OR #count < :limit"
    ] * 2


def test_admit_of_two_windows_is_one_conditional_transaction(dynamo: Limiter) -> None:
    ip = dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    with ParamRecorder(dynamo.client, "TransactWriteItems") as recorder:
        dynamo.limiter.admit([ip, user])
    (params,) = recorder.params
    conditions = [a["Update"]["ConditionExpression"] for a in params["TransactItems"]]
    assert conditions == ["attribute_not_exists(#count) OR #count < :limit"] * 2


def _conflict() -> Exception:
    error: Exception = transaction_canceled(["TransactionConflict", "None"])
    return error


def test_admit_retries_a_transaction_conflict_then_gives_up(dynamo: Limiter) -> None:
    """Contention (another transaction on the counter) cancels without counting: retried twice,
    then StoreConflict (503 with Retry-After), never an admission and never a count."""
    ip = dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(3, 60))
    with FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=2) as injector:
        dynamo.limiter.admit([ip, user])
    assert injector.calls == 3
    assert [_count(dynamo, ip), _count(dynamo, user)] == [1, 1]  # counted once

    with (
        FailFirst(dynamo.client, "TransactWriteItems", _conflict, times=99) as injector,
        pytest.raises(StoreConflict),
    ):
        dynamo.limiter.admit([ip, user])
    assert injector.calls == 3
    assert [_count(dynamo, ip), _count(dynamo, user)] == [1, 1]


@pytest.mark.parametrize(
    ("reasons", "scope"),
    [
        (["ConditionalCheckFailed", "None"], SCOPE_LOGIN_IP),
        (["None", "ConditionalCheckFailed"], SCOPE_LOGIN_USER),
        (["ConditionalCheckFailed", "ConditionalCheckFailed"], SCOPE_LOGIN_IP),
        (["TransactionConflict", "ConditionalCheckFailed"], SCOPE_LOGIN_USER),
    ],
)
def test_a_refused_counter_is_that_windows_refusal(
    dynamo: Limiter, reasons: list[str], scope: str
) -> None:
    dynamo.clock.set(WINDOW_START + 10)
    ip = dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(2, 300))
    with (
        FaultInjector(dynamo.client, "TransactWriteItems", transaction_canceled(reasons)) as inj,
        pytest.raises(RateLimited) as caught,
    ):
        dynamo.limiter.admit([ip, user])
    assert inj.calls == 1  # a refused condition is not retried
    assert caught.value.scope == scope
    assert caught.value.retry_after_seconds == {SCOPE_LOGIN_IP: 50, SCOPE_LOGIN_USER: 290}[scope]


def test_an_unexpected_cancellation_reason_is_unavailable(dynamo: Limiter) -> None:
    ip = dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(2, 300))
    error = transaction_canceled(["ThrottlingError", "None"])
    with (
        FaultInjector(dynamo.client, "TransactWriteItems", error) as injector,
        pytest.raises(StoreUnavailable),
    ):
        dynamo.limiter.admit([ip, user])
    assert injector.calls == 1
    assert scan_items(dynamo.client) == []


@pytest.mark.parametrize("windows", [1, 2])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_admission_fault_fails_closed_and_names_nothing(
    dynamo: Limiter, fault: str, windows: int
) -> None:
    chosen = [
        dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60)),
        dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(2, 300)),
    ][-windows:]
    operation = "UpdateItem" if windows == 1 else "TransactWriteItems"
    with (
        FaultInjector(dynamo.client, operation, FAULTS[fault](operation)) as injector,
        pytest.raises(StoreUnavailable) as caught,
    ):
        dynamo.limiter.admit(chosen)
    assert injector.calls == 1  # a fault is not retried here (botocore already did)
    assert caught.value.__cause__ is not None
    assert not [v for v in ("alice", "198.51.100.7") if v in caught.value.message]
    assert scan_items(dynamo.client) == []
    dynamo.limiter.admit(chosen)  # recovers with the store


def test_concurrent_hits_pass_exactly_the_limit() -> None:
    limiter = InMemoryRateLimiter(ManualClock())
    outcomes = run_at_once(
        20, lambda: _allowed(limiter, 1, SCOPE_LOGIN_USER, "alice", FIVE_PER_MINUTE)
    )
    assert outcomes.count(1) == 5
    assert outcomes.count(0) == 15


def test_sustained_concurrent_hits_never_lose_a_count() -> None:
    """Many hits per thread, so threads really interleave inside the backend: a lost update
    would let more than the limit through, a stale read fewer."""
    limiter = InMemoryRateLimiter(ManualClock())
    limit = RateLimit(20_000, 60)
    allowed = run_at_once(8, lambda: _allowed(limiter, 5000, SCOPE_LOGIN_IP, "203.0.113.1", limit))
    assert sum(allowed) == 20_000


def test_memory_backend_drops_expired_windows(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    monkeypatch.setattr(memory_module, "_PRUNE_THRESHOLD", 3)
    limiter = InMemoryRateLimiter(clock)
    for key in ("a", "b", "c"):
        limiter.hit(SCOPE_LOGIN_USER, key, FIVE_PER_MINUTE)
    assert len(limiter) == 3
    clock.advance(60 + 60 + 1)  # past the window and its margin
    limiter.hit(SCOPE_LOGIN_USER, "d", FIVE_PER_MINUTE)
    assert len(limiter) == 1


# --- the DynamoDB item -----------------------------------------------------------------------


def test_the_item_holds_a_digest_never_the_key(dynamo: Limiter) -> None:
    dynamo.clock.set(WINDOW_START + 10)
    raw_user, raw_ip = "Alice.Secret@example.com", "198.51.100.23"
    dynamo.limiter.hit(SCOPE_LOGIN_USER, raw_user, RateLimit(10, 300))
    dynamo.limiter.hit(SCOPE_LOGIN_IP, raw_ip, RateLimit(100, 300))
    dynamo.limiter.hit(SCOPE_LOGIN_IP, raw_ip, RateLimit(100, 300))

    text = items_as_text(dynamo.client)
    for fragment in (raw_user, raw_user.lower(), "Alice.Secret", raw_ip, "198.51.100"):
        assert fragment not in text
    items = {item["pk"]["S"]: item for item in scan_items(dynamo.client)}
    ip_digest = hashlib.sha256(raw_ip.encode()).hexdigest()
    ip_item = items[f"RATE#login_ip#{ip_digest}"]
    assert ip_item["sk"] == {"S": "WINDOW#1800000000"}
    assert ip_item["count"] == {"N": "2"}
    assert ip_item["expires_at"] == {"N": str(1_800_000_000 + 300 + 60)}
    assert set(ip_item) == {"pk", "sk", "count", "expires_at"}
    assert f"RATE#login_user#{hashlib.sha256(raw_user.encode()).hexdigest()}" in items


def test_one_update_item_per_hit(dynamo: Limiter) -> None:
    with ParamRecorder(dynamo.client, "UpdateItem") as recorder:
        dynamo.limiter.hit(SCOPE_REFRESH_USER, "user-1", FIVE_PER_MINUTE)
    assert len(recorder.params) == 1
    params = recorder.params[0]
    assert params["UpdateExpression"] == "ADD #count :one SET #expires_at = :expires_at"
    assert params["ReturnValues"] == "UPDATED_NEW"
    assert "ConditionExpression" not in params


def test_keyed_digest_when_a_secret_is_configured(dynamo: Limiter) -> None:
    secret = b"rate-limit-key-secret"
    limiter = DynamoDBRateLimiter(
        TABLE, dynamo.clock, boto3_client=dynamo.client, key_secret=secret
    )
    limiter.hit(SCOPE_LOGIN_IP, "198.51.100.23", FIVE_PER_MINUTE)
    (item,) = scan_items(dynamo.client)
    digest = hmac.new(secret, b"198.51.100.23", hashlib.sha256).hexdigest()
    assert item["pk"]["S"] == f"RATE#login_ip#{digest}"
    assert digest != hashlib.sha256(b"198.51.100.23").hexdigest()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_store_fault_fails_closed(dynamo: Limiter, fault: str) -> None:
    with (
        FaultInjector(dynamo.client, "UpdateItem", FAULTS[fault]("UpdateItem")) as injector,
        pytest.raises(StoreUnavailable) as caught,
    ):
        dynamo.limiter.hit(SCOPE_LOGIN_USER, "alice", FIVE_PER_MINUTE)
    assert injector.calls == 1
    assert caught.value.__cause__ is not None
    assert "alice" not in caught.value.message
    assert scan_items(dynamo.client) == []
    dynamo.limiter.hit(SCOPE_LOGIN_USER, "alice", FIVE_PER_MINUTE)  # recovers with the store
    assert scan_items(dynamo.client)[0]["count"] == {"N": "1"}
