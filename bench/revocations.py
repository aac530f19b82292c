"""The revocation list's costs, measured on moto with the real store and the real reader:
the bucket item's size, the write units a revocation costs, the DynamoDB reads per million
authorizer requests at 10 and 100 warm containers, and the per-request cost of the check
(``RevocationList.standing`` on a fresh copy: timeit, best of 5).

    .venv/bin/python -m bench.revocations

Time is a ManualClock (an hour of traffic takes seconds). Sizes follow DynamoDB's item-size
rules (attribute names plus values; a number is about one byte per two digits plus one), and
write units its pricing: a transactional write costs 2 units per started KB of each item.
"""

from __future__ import annotations

import json
import math
import os
import timeit
from typing import Any

import boto3
from argon2 import PasswordHasher
from moto import mock_aws

from tests.clock import ManualClock
from tokencore.clock import SYSTEM_CLOCK
from tokencore.config import Settings
from tokencore.revocations import (
    BUCKET_SECONDS,
    RevocationList,
    bucket_key,
    bucket_start,
    window_seconds,
)
from tokencore.sessions import DynamoDBSessionStore
from tokencore.store.table import create_table
from tokencore.users import DynamoDBUserStore, RevokeAllSessions, UserService

T0 = 1_800_000_000.0
TABLE = "bench-revocations"
HOUR = 3600


def item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item (S, N and BOOL attributes)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            digits = value["N"].lstrip("-").replace(".", "").lstrip("0") or "0"
            size += math.ceil(len(digits) / 2) + 1
        else:
            size += 1
    return size


def bucket_sizes(revocations_per_minute: int) -> dict[str, Any]:
    """Revoke sessions at a steady rate for a minute; the bucket's size and the units a
    revocation costs, against the single UpdateItem it cost before."""
    clock = ManualClock(T0 - T0 % BUCKET_SECONDS)
    settings = Settings()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        store = DynamoDBSessionStore(TABLE, settings, clock, boto3_client=client)
        sessions = [store.create_session(f"user-{n}") for n in range(revocations_per_minute)]
        session_item = client.get_item(TableName=TABLE, Key=store.item_key(sessions[0].session_id))
        session_size = item_bytes(session_item["Item"])
        step = BUCKET_SECONDS / revocations_per_minute
        for session in sessions:
            store.revoke(session.session_id)
            clock.advance(step * 0.99)
        item = client.get_item(TableName=TABLE, Key=bucket_key(bucket_start(T0 - T0 % 60)))["Item"]
    size = item_bytes(item)
    last_write_units = 2 * math.ceil(session_size / 1024) + 2 * math.ceil(size / 1024)
    return {
        "revocations_per_minute": revocations_per_minute,
        "bucket_item_bytes": size,
        "session_item_bytes": session_size,
        "write_units_before": math.ceil(session_size / 1024),
        "write_units_now_at_full_bucket": last_write_units,
        "items_in_window": window_seconds(900, 30) // BUCKET_SECONDS + 2,
    }


def user_entry() -> dict[str, Any]:
    """A revoke-all's user entry: its bytes, and the transaction it joins (the marker on the
    profile and on its username claim), in write units before and after."""
    clock = ManualClock(T0 - T0 % BUCKET_SECONDS)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        users = UserService(
            DynamoDBUserStore(TABLE, clock, boto3_client=client),
            RevokeAllSessions(DynamoDBSessionStore(TABLE, Settings(), clock, boto3_client=client)),
            clock,
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        user = users.create_user("bench-user", "bench-password-123")
        users.revoke_all_sessions(user.user_id, "bench")
        item = client.get_item(TableName=TABLE, Key=bucket_key(bucket_start(clock.now())))["Item"]
        profile = client.get_item(TableName=TABLE, Key=DynamoDBUserStore.profile_key(user.user_id))
    entry = {name: value for name, value in item.items() if name.startswith("u_")}
    profile_units = 2 * math.ceil(item_bytes(profile["Item"]) / 1024)
    return {
        "user_entry_bytes": item_bytes(entry),
        "marker_write_units_before": 2 * profile_units,
        "marker_write_units_now": 2 * profile_units + 2 * math.ceil(item_bytes(item) / 1024),
    }


def reads(containers: int, propagation: int, requests_per_second: float) -> dict[str, Any]:
    """``containers`` warm authorizers sharing ``requests_per_second`` for an hour: items read
    and BatchGetItem calls, per million requests."""
    clock = ManualClock(T0)
    calls = {"batch": 0, "items": 0}

    def fetch(keys: list[dict[str, Any]]) -> list[Any]:
        calls["batch"] += 1
        calls["items"] += len(keys)
        return []

    lists = [
        RevocationList(
            fetch,
            clock,
            propagation_seconds=propagation,
            window=window_seconds(900, 30),
            background=lambda job: job(),
        )
        for _ in range(containers)
    ]
    for revocations in lists:  # cold starts: the whole window once
        revocations.standing("x", "user-0", 0)
    cold = dict(calls)
    calls.update(batch=0, items=0)
    per_container = requests_per_second / containers
    tick = max(1.0 / per_container, 0.25)  # each container sees a request at least this often
    elapsed = 0.0
    while elapsed < HOUR:
        clock.advance(tick)
        elapsed += tick
        for revocations in lists:
            revocations.standing("x", "user-0", 0)
    requests = requests_per_second * HOUR
    return {
        "containers": containers,
        "propagation_seconds": propagation,
        "requests_per_second": requests_per_second,
        "batch_get_calls_per_hour": calls["batch"],
        "items_read_per_hour": calls["items"],
        "read_units_per_million_requests": round(calls["items"] * 1e6 / requests, 1),
        "cold_start_items": cold["items"] // containers,
    }


def fast_path(listed_sessions: int, listed_users: int, number: int = 200_000) -> dict[str, Any]:
    """Nanoseconds per ``standing`` call on a fresh copy holding this many entries, for a token
    that is not listed (every request's case) and one whose session is; the bare clock read for
    comparison. Best of 5 runs of ``number`` calls."""
    item: dict[str, Any] = bucket_key(bucket_start(T0))
    item.update({f"s_session-{n:06d}": {"N": "1"} for n in range(listed_sessions)})
    item.update({f"u_user-{n:06d}": {"N": str(int(T0))} for n in range(listed_users)})
    revocations = RevocationList(
        lambda _keys: [item],
        SYSTEM_CLOCK,
        propagation_seconds=60,
        window=window_seconds(900, 30),
        background=lambda job: job(),
    )
    revocations.standing("warm", "up", 0)
    standing = revocations.standing

    def best(statement: Any) -> float:
        return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e9

    return {
        "listed_sessions": listed_sessions,
        "listed_users": listed_users,
        "not_listed_ns": round(best(lambda: standing("session-x", "user-x", 1)), 1),
        "session_listed_ns": round(best(lambda: standing("session-000001", "user-x", 1)), 1),
        "user_listed_ns": round(best(lambda: standing("session-x", "user-000001", 1)), 1),
        "clock_read_ns": round(best(SYSTEM_CLOCK.now), 1),
        "empty_call_ns": round(best(lambda: None), 1),
    }


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    for rate in (1, 60, 600):
        print(json.dumps(bucket_sizes(rate)))
    print(json.dumps(user_entry()))
    for containers, rps in ((10, 100.0), (10, 1000.0), (100, 1000.0), (100, 10_000.0)):
        print(json.dumps(reads(containers, 5, rps)))
    for sessions, users in ((0, 0), (1000, 100), (20_000, 2000)):
        print(json.dumps(fast_path(sessions, users)))


if __name__ == "__main__":
    main()
