"""The authorizer's copy of the revocation list: when it is fetched, trusted, and given up."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.clock import ManualClock
from tokencore.revocations import (
    BUCKET_SECONDS,
    RevocationList,
    Standing,
    bucket_start,
    entry_update,
    user_entry_update,
)

T0 = 1_800_000_000.0
WINDOW = 930


class Table:
    """Bucket items as the session store writes them; counts reads; can be made to fail."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.reads: list[int] = []
        self.failing = False

    def revoke(self, session_id: str, at: float) -> None:
        self._apply(entry_update("t", session_id, at, WINDOW)["Update"], at)

    def revoke_user(self, user_id: str, not_before: float) -> None:
        self._apply(user_entry_update("t", user_id, not_before, WINDOW)["Update"], not_before)

    def _apply(self, update: dict[str, Any], at: float) -> None:
        start = bucket_start(at)
        item = self.items.setdefault(start, {**update["Key"]})
        item[update["ExpressionAttributeNames"]["#entry"]] = update["ExpressionAttributeValues"][
            ":at"
        ]

    def fetch(self, keys: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
        if self.failing:
            raise OSError("unreachable")
        starts = [int(key["pk"]["S"].split("#")[1]) for key in keys]
        self.reads.extend(starts)
        return [self.items[start] for start in starts if start in self.items]


def make(table: Table, clock: ManualClock) -> RevocationList:
    return RevocationList(
        table.fetch, clock, propagation_seconds=5, window=WINDOW, background=lambda job: job()
    )


def test_a_revoked_session_is_listed_within_the_propagation_bound_plus_one_request() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    assert revocations.standing("s1", "user-0", 0) is Standing.NOT_LISTED  # the cold fetch
    table.revoke("s1", clock.now())
    clock.advance(4.9)
    # the copy is trusted for 5 s
    assert revocations.standing("s1", "user-0", 0) is Standing.NOT_LISTED
    clock.advance(0.1)
    # answered, refresh started
    assert revocations.standing("s1", "user-0", 0) is Standing.NOT_LISTED
    assert revocations.standing("s1", "user-0", 0) is Standing.LISTED
    assert revocations.standing("s2", "user-0", 0) is Standing.NOT_LISTED


def test_reads_scale_with_time_not_requests_and_sealed_buckets_are_not_read_again() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    revocations.standing("s", "user-0", 0)
    cold = len(table.reads)
    assert cold == WINDOW // BUCKET_SECONDS + 1 or cold == WINDOW // BUCKET_SECONDS + 2
    for _ in range(1000):
        revocations.standing("s", "user-0", 0)
    assert len(table.reads) == cold  # a thousand requests, no read
    table.reads.clear()
    for _ in range(120):  # ten minutes, one request per 5 s
        clock.advance(5)
        revocations.standing("s", "user-0", 0)
    # Steady state: the current bucket, plus a just-ended one until it is sealed.
    assert 120 <= len(table.reads) <= 240


def test_an_old_entry_leaves_with_its_window() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke("old", clock.now())
    assert revocations.standing("old", "user-0", 0) is Standing.LISTED
    clock.advance(WINDOW + 2 * BUCKET_SECONDS)
    revocations.standing("old", "user-0", 0)
    assert revocations.standing("old", "user-0", 0) is Standing.NOT_LISTED


def test_a_copy_that_cannot_be_refreshed_is_trusted_three_periods_then_stale() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke("s1", clock.now())
    assert revocations.standing("s1", "user-0", 0) is Standing.LISTED
    table.failing = True
    clock.advance(14.9)
    assert revocations.standing("s2", "user-0", 0) is Standing.NOT_LISTED
    clock.advance(0.1)
    assert revocations.standing("s2", "user-0", 0) is Standing.STALE  # the caller reads the session
    assert revocations.failures >= 1
    table.failing = False
    clock.advance(5)  # the next synchronous attempt after a failure waits one period
    assert revocations.standing("s2", "user-0", 0) is Standing.NOT_LISTED


def test_a_cold_container_without_the_list_is_stale_not_open() -> None:
    clock, table = ManualClock(T0), Table()
    table.failing = True
    assert make(table, clock).standing("s1", "user-0", 0) is Standing.STALE


def test_the_entry_names_the_session_only_in_the_attribute_name() -> None:
    update = entry_update("t", "sid-1", T0 + 61.5, WINDOW)["Update"]
    assert update["Key"]["pk"]["S"] == f"REVOKED#{bucket_start(T0 + 61.5)}"
    assert update["ExpressionAttributeNames"]["#entry"] == "s_sid-1"
    expires = int(update["ExpressionAttributeValues"][":expires_at"]["N"])
    assert expires == bucket_start(T0 + 61.5) + BUCKET_SECONDS + WINDOW
    # Size of one entry in DynamoDB's accounting: name bytes + number bytes (about 1 + 21/2).
    assert len(json.dumps(update)) < 400


@pytest.mark.parametrize("propagation", [0, -1])
def test_propagation_must_be_positive(propagation: int) -> None:
    from tokencore.errors import ConfigError

    with pytest.raises(ConfigError):
        RevocationList(Table().fetch, ManualClock(T0), propagation_seconds=propagation, window=1)


# --- user entries: revoke-all, a disabled user, a password change ------------------------------


def test_a_user_entry_denies_the_users_tokens_issued_before_its_second() -> None:
    clock, table = ManualClock(T0 + 0.7), Table()
    revocations = make(table, clock)
    table.revoke_user("u1", clock.now())  # not before T0 + 0.7: the entry holds T0
    clock.advance(5)
    revocations.standing("s", "u1", 0)
    whole = int(T0)
    assert revocations.standing("s", "u1", whole - 1) is Standing.USER_LISTED
    assert revocations.standing("s", "u1", whole - 900) is Standing.USER_LISTED
    # The revoke-all's own second: a login a moment after it is not locked out for the whole
    # window; that second's older sessions are listed one by one by the index pass.
    assert revocations.standing("s", "u1", whole) is Standing.NOT_LISTED
    assert revocations.standing("s", "u1", whole + 1) is Standing.NOT_LISTED
    assert revocations.standing("s", "u2", whole - 1) is Standing.NOT_LISTED  # another user


def test_a_listed_session_is_listed_whatever_its_iat() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke("s1", clock.now())
    clock.advance(5)
    revocations.standing("x", "u", 0)
    assert revocations.standing("s1", "u", int(T0) + 10**6) is Standing.LISTED


def test_the_latest_not_before_of_the_window_wins() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke_user("u1", T0)
    table.revoke_user("u1", T0 + 3 * BUCKET_SECONDS)  # a later revoke-all, another bucket
    clock.advance(3 * BUCKET_SECONDS + 5)
    revocations.standing("s", "u1", 0)
    later = int(T0) + 3 * BUCKET_SECONDS
    assert revocations.standing("s", "u1", later - 1) is Standing.USER_LISTED
    assert revocations.standing("s", "u1", later) is Standing.NOT_LISTED


def test_a_user_entry_leaves_with_its_window() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke_user("u1", T0)
    assert revocations.standing("s", "u1", int(T0) - 1) is Standing.USER_LISTED
    clock.advance(WINDOW + 2 * BUCKET_SECONDS)
    revocations.standing("s", "u1", 0)
    # Every token issued before T0 has expired by now; the entry is gone, and with it the cost.
    assert revocations.standing("s", "u1", int(T0) - 1) is Standing.NOT_LISTED


def test_a_malformed_user_entry_fails_the_fetch_instead_of_dropping_the_entry() -> None:
    clock, table = ManualClock(T0), Table()
    table.revoke_user("u1", T0)
    table.items[bucket_start(T0)]["u_u1"] = {"S": "not a number"}
    assert make(table, clock).standing("s", "u1", 0) is Standing.STALE


def test_the_user_entry_holds_the_not_before_second() -> None:
    update = user_entry_update("t", "user-1", T0 + 0.99, WINDOW)["Update"]
    assert update["ExpressionAttributeNames"]["#entry"] == "u_user-1"
    assert update["ExpressionAttributeValues"][":at"] == {"N": str(int(T0))}


class _NoLock:
    def __enter__(self) -> None:
        raise AssertionError("the fast path took the lock")

    def __exit__(self, *_: object) -> None:
        return None


def test_the_fast_path_takes_no_lock_and_starts_no_refresh() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    table.revoke("s1", clock.now())
    table.revoke_user("u1", T0 + 1)
    revocations.standing("x", "u", 0)
    revocations._lock = _NoLock()  # type: ignore[assignment]
    started: list[object] = []
    revocations.background = started.append
    clock.advance(4.9)
    assert revocations.standing("s1", "u", 0) is Standing.LISTED
    assert revocations.standing("s2", "u1", int(T0)) is Standing.USER_LISTED
    assert revocations.standing("s2", "u2", int(T0)) is Standing.NOT_LISTED
    assert started == []


def test_past_the_bound_only_the_request_that_started_the_refresh_answers_from_the_old_copy() -> (
    None
):
    """Rule 2: a request that comes while a refresh is in flight waits for it, so a revocation
    counts within the propagation bound plus one request. The refresh job is held until the
    second request is waiting; nothing here depends on how fast the machine is (the join below
    is a hang bound: a waiting request that returned early fails it, a slow one cannot)."""
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    assert revocations.standing("s1", "u", 0) is Standing.NOT_LISTED  # the cold fetch
    table.revoke("s1", clock.now())
    release = threading.Event()
    jobs: list[threading.Thread] = []

    def held_in_a_thread(job: Callable[[], None]) -> None:
        def run() -> None:
            release.wait(timeout=60)
            job()

        jobs.append(threading.Thread(target=run, daemon=True))
        jobs[-1].start()

    revocations.background = held_in_a_thread
    clock.advance(5)
    # The first request past the bound starts the refresh and answers from the old copy.
    assert revocations.standing("s1", "u", 0) is Standing.NOT_LISTED
    assert len(jobs) == 1
    answers: list[Standing] = []
    second = threading.Thread(target=lambda: answers.append(revocations.standing("s1", "u", 0)))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive()  # waiting for the refresh, not answering
    assert answers == []
    release.set()
    second.join(timeout=60)
    assert answers == [Standing.LISTED]
    assert len(jobs) == 1  # it started no refresh of its own
    assert revocations.standing("s1", "u", 0) is Standing.LISTED


def test_a_failed_refresh_lets_the_waiting_request_answer_from_the_trusted_copy() -> None:
    clock, table = ManualClock(T0), Table()
    revocations = make(table, clock)
    revocations.standing("s1", "u", 0)
    table.revoke("s1", clock.now())
    table.failing = True
    clock.advance(5)
    # Inline refreshes fail; the copy stays trusted (rule 3 bounds it), nothing waits forever.
    assert revocations.standing("s1", "u", 0) is Standing.NOT_LISTED
    assert revocations.standing("s1", "u", 0) is Standing.NOT_LISTED
    assert revocations.failures == 1  # no second fetch within a period of the failure
