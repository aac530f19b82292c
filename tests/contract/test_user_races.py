"""Every check-then-act of the user store, under parallelism, on the in-memory store (one lock)
and on the local stack's serialized endpoint (DynamoDB transactions, as in AWS): dynalite has
no transactions, and every user write is one.

* Creation: the normalized name is claimed in the same transaction as the profile is written
  (``attribute_not_exists``), so of N creations of one name in any case or Unicode form exactly
  one makes a user.
* Updates (roles, disable, password): the profile and the claim's copy of it are written in one
  transaction, so the copy a login reads never drifts from the profile.
* Rehash: the swap is conditional on the hash that was verified, so it never undoes a password
  change that landed meanwhile.
* "Revoke all": the marker is raised only while it is below the new instant, so it never moves
  back, whatever order two calls land in.

Each check is also run against a deliberately non-atomic variant (check, then a barrier or a
fixed worst order of the threads, then write), and fails there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tests.concurrency import InOrder, run_at_once
from tokencore.awsclient import call_dynamodb
from tokencore.errors import StoreConflict, UserExists
from tokencore.store.table import PARTITION_KEY, USER_PREFIX, USERNAME_PREFIX
from tokencore.users import DynamoDBUserStore, InMemoryUserStore, User, UserService
from tokencore.users.base import UserChanges, UserStore, normalize_username
from tokencore.users.dynamodb import _to_item, claim_key

from ._user_fixtures import RecordingRevoker
from .conftest import Backend, open_backend

THREADS = 24
PASSWORD = "correct horse battery staple"
# One name in many forms: case, compatibility (fullwidth) letters, surrounding whitespace
# (ideographic and no-break spaces too). normalize_username maps every one to "alice".
FORMS = [
    "alice",
    "ALICE",
    "Alice",
    " alice ",
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth "alice"
    "\uff21\uff2c\uff29\uff23\uff25",  # fullwidth "ALICE"
    "\u3000aLiCe",
    "alice\u00a0",
]


def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def store_for(backend: Backend) -> UserStore:
    if backend.client is None:
        return InMemoryUserStore()
    assert backend.table_name is not None
    return DynamoDBUserStore(backend.table_name, backend.clock, boto3_client=backend.client)


def service_for(backend: Backend, store: UserStore) -> UserService:
    return UserService(store, RecordingRevoker(), backend.clock, hasher=hasher())


def table_items(backend: Backend, prefix: str) -> list[dict[str, Any]]:
    assert backend.client is not None
    items: list[dict[str, Any]] = backend.client.scan(TableName=backend.table_name)["Items"]
    return [item for item in items if item[PARTITION_KEY]["S"].startswith(prefix)]


# --- creation: exactly one user per normalized name --------------------------------------------

Created = User | UserExists | StoreConflict


def create_at_once(service: UserService) -> list[Created]:
    forms = iter(FORMS * (THREADS // len(FORMS)))
    lock = threading.Lock()

    def create() -> Created:
        with lock:
            username = next(forms)
        try:
            return service.create_user(username, PASSWORD)
        except (UserExists, StoreConflict) as refused:  # StoreConflict: a retryable race
            return refused

    return run_at_once(THREADS, create)


def exactly_one_user(backend: Backend, store: UserStore, outcomes: list[Created]) -> None:
    created = [o for o in outcomes if isinstance(o, User)]
    assert len(created) == 1, f"{len(created)} users created for one name"
    assert any(isinstance(o, UserExists) for o in outcomes)
    (winner,) = created
    assert store.get_by_username("ALICE") == winner
    assert store.get(winner.user_id) == winner
    if backend.client is not None:
        assert [i["user_id"]["S"] for i in table_items(backend, USER_PREFIX)] == [winner.user_id]
        claims = table_items(backend, USERNAME_PREFIX)
        assert [claim["user_id"]["S"] for claim in claims] == [winner.user_id]


def test_the_forms_are_one_name() -> None:
    assert {normalize_username(form) for form in FORMS} == {"alice"}


def test_parallel_creations_of_one_name_in_any_form_make_exactly_one_user(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    store = store_for(backend)
    exactly_one_user(backend, store, create_at_once(service_for(backend, store)))


class CheckThenInsertMemoryStore(InMemoryUserStore):
    """Looks the name up, waits for every thread at the barrier, then writes."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self._barrier = barrier

    def _insert(self, user: User) -> None:
        taken = self._load_by_username(user.normalized_username) is not None
        self._barrier.wait()
        if taken:
            raise UserExists("username is taken")
        with self._lock:
            self._claims[user.normalized_username] = user.user_id
            self._users[user.user_id] = user


class CheckThenInsertDynamoDBStore(DynamoDBUserStore):
    """GetItem of the claim, barrier, then two PutItems without a condition."""

    def __init__(self, backend: Backend, barrier: threading.Barrier) -> None:
        assert backend.table_name is not None
        super().__init__(backend.table_name, backend.clock, boto3_client=backend.client)
        self._barrier = barrier

    def _insert(self, user: User) -> None:
        taken = self._load_by_username(user.normalized_username) is not None
        self._barrier.wait()
        if taken:
            raise UserExists("username is taken")
        for item in (_to_item(user), {**_to_item(user), **claim_key(user.normalized_username)}):
            call_dynamodb(
                self._client, "put_item", {"TableName": self.table_name, "Item": item}, what="t"
            )


def test_the_creation_check_catches_a_check_then_insert_store(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    barrier = threading.Barrier(THREADS)
    store: UserStore = (
        CheckThenInsertMemoryStore(barrier)
        if backend.client is None
        else CheckThenInsertDynamoDBStore(backend, barrier)
    )
    outcomes = create_at_once(service_for(backend, store))
    with pytest.raises(AssertionError):
        exactly_one_user(backend, store, outcomes)
    assert all(isinstance(o, User) for o in outcomes)  # every thread saw the name free


# --- updates: the claim's copy never drifts from the profile -----------------------------------

UPDATERS = 12


def update_at_once(store: UserStore, user: User) -> None:
    """Roles, the disabled flag and the password, each changed by several threads at once."""
    hashes = [hasher().hash(f"password {n}") for n in range(UPDATERS)]
    numbers = iter(range(UPDATERS))
    lock = threading.Lock()

    def update() -> None:
        with lock:
            n = next(numbers)
        if n % 3 == 0:
            store.set_roles(user.user_id, [f"role-{n}"])
        elif n % 3 == 1:
            store.set_disabled(user.user_id, n % 2 == 0)
        else:
            store.set_password(user.user_id, hashes[n], 1_800_000_000.0 + n)

    run_at_once(UPDATERS, update)


def profile_and_claim_agree(store: UserStore, user: User) -> None:
    assert store.get(user.user_id) == store.get_by_username(user.username)


def test_parallel_updates_never_let_the_claims_copy_drift(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    store = store_for(backend)
    user = service_for(backend, store).create_user("alice", PASSWORD, roles=["user"])
    for _ in range(3):
        update_at_once(store, user)
        profile_and_claim_agree(store, user)


class TwoWritesDynamoDBStore(DynamoDBUserStore):
    """Updates the profile, then the claim, in two UpdateItems; the threads write their claims
    in the reverse order of their profile writes (the worst interleaving, made certain)."""

    def __init__(self, backend: Backend, threads: int) -> None:
        assert backend.table_name is not None
        super().__init__(backend.table_name, backend.clock, boto3_client=backend.client)
        self._barrier = threading.Barrier(threads)
        self._lock = threading.Lock()
        self._profile_order: list[int] = []
        self._claim_order: InOrder | None = None

    def _update(self, user_id: str, changes: UserChanges) -> User:
        current = self._load(user_id)
        assert current is not None
        roles = {"L": [{"S": role} for role in changes.roles or ()]}
        me = threading.get_ident()
        with self._lock:  # the order written is the order recorded
            self._write(_profile_key_of(user_id), roles)
            self._profile_order.append(me)
        if self._barrier.wait() == 0:
            self._claim_order = InOrder(list(reversed(self._profile_order)))
        self._barrier.wait()
        assert self._claim_order is not None
        with self._claim_order.turn(me):
            self._write(claim_key(current.normalized_username), roles)
        return changes.apply_to(current)

    def _write(self, key: dict[str, Any], roles: dict[str, Any]) -> None:
        call_dynamodb(
            self._client,
            "update_item",
            {
                "TableName": self.table_name,
                "Key": key,
                "UpdateExpression": "SET #roles = :roles",
                "ExpressionAttributeNames": {"#roles": "roles"},
                "ExpressionAttributeValues": {":roles": roles},
            },
            what="test store",
        )


def _profile_key_of(user_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": USER_PREFIX + user_id}, "sk": {"S": "PROFILE"}}


@pytest.fixture
def motoserver(clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Backend]:
    with open_backend("motoserver", clock, request) as backend:
        yield backend


def test_the_drift_check_catches_a_store_that_writes_profile_and_claim_apart(
    motoserver: Backend,
) -> None:
    """DynamoDB only: the in-memory store keeps one record per user, so it has no copy."""
    backend = motoserver
    user = service_for(backend, store_for(backend)).create_user("alice", PASSWORD)
    store = TwoWritesDynamoDBStore(backend, 2)
    run_at_once(2, lambda: store.set_roles(user.user_id, [f"role-{threading.get_ident()}"]))
    with pytest.raises(AssertionError):
        profile_and_claim_agree(store, user)


# --- rehash: never undoes a password change ----------------------------------------------------

HALF = 8
Swap = Callable[[str, str, str], bool]
Change = Callable[[str, str, float], User]


def rehash_while_changing(swap: Swap, change: Change, user: User) -> tuple[set[str], list[bool]]:
    """HALF threads swap in a rehash of the old password while HALF change the password; the
    hashes the changes set, and each swap's result."""
    old = user.password_hash
    rehashes = [hasher().hash(PASSWORD) for _ in range(HALF)]
    changed = [hasher().hash(f"new password {n}") for n in range(HALF)]
    jobs = iter([("swap", h) for h in rehashes] + [("change", h) for h in changed])
    lock = threading.Lock()

    def act() -> bool | None:
        with lock:
            kind, new_hash = next(jobs)
        if kind == "swap":
            return swap(user.user_id, old, new_hash)
        change(user.user_id, new_hash, 1_800_000_100.0)
        return None

    results = run_at_once(2 * HALF, act)
    return set(changed), [r for r in results if r is not None]


def a_password_change_stands(
    store: UserStore, user: User, changed: set[str], swaps: list[bool]
) -> None:
    assert store.get(user.user_id).password_hash in changed
    assert swaps.count(True) <= 1  # only while the hash was still the old one


def test_a_rehash_never_undoes_a_parallel_password_change(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    store = store_for(backend)
    for round_number in range(3):
        user = service_for(backend, store).create_user(f"user{round_number}", PASSWORD)
        changed, swaps = rehash_while_changing(
            store.replace_password_hash, store.set_password, user
        )
        a_password_change_stands(store, user, changed, swaps)
        profile_and_claim_agree(store, user)


def test_the_rehash_check_catches_a_read_compare_write_swap(
    transactional_serializing_backend: Backend,
) -> None:
    """A swap that compares on a read and then writes unconditionally; every password change
    lands between the swaps' reads and their writes (two barriers shared by all threads)."""
    backend = transactional_serializing_backend
    store = store_for(backend)
    user = service_for(backend, store).create_user("alice", PASSWORD)
    read, changed = threading.Barrier(2 * HALF), threading.Barrier(2 * HALF)

    def read_compare_write(user_id: str, expected_hash: str, new_hash: str) -> bool:
        same = store.get(user_id).password_hash == expected_hash
        read.wait()
        changed.wait()
        if same:
            store.set_password(user_id, new_hash, store.get(user_id).password_changed_at)
        return same

    def change_between(user_id: str, password_hash: str, changed_at: float) -> User:
        read.wait()
        updated = store.set_password(user_id, password_hash, changed_at)
        changed.wait()
        return updated

    hashes, swaps = rehash_while_changing(read_compare_write, change_between, user)
    with pytest.raises(AssertionError):
        a_password_change_stands(store, user, hashes, swaps)
    assert swaps.count(True) == HALF


# --- "revoke all": the marker never moves back -------------------------------------------------

MARKERS = 10
T0 = 1_800_000_000.0


def mark_at_once(mark: Callable[[str, float], User], user: User) -> list[tuple[float, float]]:
    """MARKERS threads each mark a different instant: (the instant, the marker returned)."""
    instants = iter(T0 + n for n in range(MARKERS))
    lock = threading.Lock()

    def one() -> tuple[float, float]:
        with lock:
            at = next(instants)
        return at, mark(user.user_id, at).sessions_revoked_at

    return run_at_once(MARKERS, one)


def the_latest_instant_stands(
    store: UserStore, user: User, returned: list[tuple[float, float]]
) -> None:
    assert all(marker >= at for at, marker in returned)
    assert store.get(user.user_id).sessions_revoked_at == T0 + MARKERS - 1
    profile_and_claim_agree(store, user)


def test_parallel_revoke_alls_keep_the_latest_instant(
    transactional_serializing_backend: Backend,
) -> None:
    backend = transactional_serializing_backend
    store = store_for(backend)
    user = service_for(backend, store).create_user("alice", PASSWORD)
    returned = mark_at_once(store.mark_sessions_revoked, user)
    the_latest_instant_stands(store, user, returned)
    store.mark_sessions_revoked(user.user_id, T0)  # an older instant changes nothing
    the_latest_instant_stands(store, user, returned)


def test_the_marker_check_catches_a_read_then_write_marker(
    transactional_serializing_backend: Backend,
) -> None:
    """The marker as it was written before: read, compare, then an unconditional update. The
    threads write in descending order of their instants, so the earliest lands last."""
    backend = transactional_serializing_backend
    store = store_for(backend)
    user = service_for(backend, store).create_user("alice", PASSWORD)
    barrier = threading.Barrier(MARKERS)
    descending = InOrder([T0 + n for n in reversed(range(MARKERS))])

    def read_then_write(user_id: str, at: float) -> User:
        current = store.get(user_id)
        barrier.wait()
        with descending.turn(at):
            if at <= current.sessions_revoked_at:
                return current
            return store._checked_update(user_id, UserChanges(sessions_revoked_at=at))

    returned = mark_at_once(read_then_write, user)
    with pytest.raises(AssertionError):
        the_latest_instant_stands(store, user, returned)
    assert store.get(user.user_id).sessions_revoked_at == T0
