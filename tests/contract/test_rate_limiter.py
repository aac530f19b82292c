"""The rate-limiter contract, run against the in-memory and the DynamoDB (moto) backends."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.concurrency import run_at_once
from tests.contract._user_fixtures import (
    FAULTS,
    FaultInjector,
    ParamRecorder,
    fresh_table,
    items_as_text,
    scan_items,
)
from tests.contract._user_fixtures import TABLE_NAME as TABLE
from tokencore.clock import ManualClock
from tokencore.config import RateLimit, Settings
from tokencore.errors import ConfigError, InvalidRequest, RateLimited, StoreUnavailable
from tokencore.ratelimit import (
    SCOPE_LOGIN_IP,
    SCOPE_LOGIN_USER,
    SCOPE_REFRESH_USER,
    DynamoDBRateLimiter,
    InMemoryRateLimiter,
    RateLimiter,
)
from tokencore.ratelimit import memory as memory_module

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


# --- check, then count (the login's two steps) ----------------------------------------------


def test_full_window_reads_without_counting(rl: Limiter) -> None:
    rl.clock.set(WINDOW_START + 15)
    ip = rl.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(2, 60))
    user = rl.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    assert user.retry_after_seconds == 45
    for _ in range(5):
        assert rl.limiter.full_window([ip, user]) is None  # reading never fills a window
    rl.limiter.count([ip, user])
    assert rl.limiter.full_window([ip, user]) == user
    assert rl.limiter.full_window([ip]) is None
    rl.limiter.count([ip])
    assert rl.limiter.full_window([ip, user]) == ip  # the first full one, in order
    assert rl.limiter.full_window([]) is None


def test_admit_counts_all_windows_or_none(rl: Limiter) -> None:
    ip = rl.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = rl.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    rl.limiter.admit([ip, user])
    with pytest.raises(RateLimited) as caught:
        rl.limiter.admit([ip, user])
    assert caught.value.scope == SCOPE_LOGIN_USER
    # The refused attempt counted nowhere: the IP window still has two slots.
    other = rl.limiter.window(SCOPE_LOGIN_USER, "bob", RateLimit(5, 60))
    rl.limiter.admit([ip, other])
    rl.limiter.admit([ip, other])
    with pytest.raises(RateLimited) as caught:
        rl.limiter.admit([ip, other])
    assert caught.value.scope == SCOPE_LOGIN_IP


def test_count_goes_past_the_limit_and_hit_sees_it(rl: Limiter) -> None:
    limit = RateLimit(2, 60)
    window = rl.limiter.window(SCOPE_LOGIN_USER, "alice", limit)
    for _ in range(4):
        rl.limiter.count([window])
    with pytest.raises(RateLimited):
        rl.limiter.admit([window])
    with pytest.raises(RateLimited):
        rl.limiter.hit(SCOPE_LOGIN_USER, "alice", limit)  # the same counter
    rl.clock.advance(60)
    fresh = rl.limiter.window(SCOPE_LOGIN_USER, "alice", limit)
    assert rl.limiter.full_window([fresh]) is None
    rl.limiter.admit([fresh])


def test_concurrent_admits_pass_exactly_the_limit() -> None:
    limiter = InMemoryRateLimiter(ManualClock())
    windows = [
        limiter.window(SCOPE_LOGIN_IP, "203.0.113.1", RateLimit(5, 60)),
        limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(50, 60)),
    ]

    def admit() -> bool:
        try:
            limiter.admit(windows)
        except RateLimited:
            return False
        return True

    admitted = run_at_once(20, admit)
    assert admitted.count(True) == 5
    # All or nothing: the user window counted exactly the admitted attempts.
    assert limiter._counts(windows) == [5, 5]


def test_admit_is_one_conditional_transaction(dynamo: Limiter) -> None:
    ip = dynamo.limiter.window(SCOPE_LOGIN_IP, "198.51.100.7", RateLimit(3, 60))
    user = dynamo.limiter.window(SCOPE_LOGIN_USER, "alice", RateLimit(1, 60))
    with ParamRecorder(dynamo.client, "TransactWriteItems") as recorder:
        dynamo.limiter.admit([ip, user])
    (params,) = recorder.params
    conditions = [a["Update"]["ConditionExpression"] for a in params["TransactItems"]]
    assert conditions == ["attribute_not_exists(#count) OR #count < :limit"] * 2
    with ParamRecorder(dynamo.client, "BatchGetItem") as recorder:
        assert dynamo.limiter.full_window([ip, user]) == user
    (params,) = recorder.params
    assert params["RequestItems"][TABLE]["ConsistentRead"] is True


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
