"""The user-store contract, run against the in-memory and the DynamoDB (moto) backends, and the
account service on top of each."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.clock import ManualClock
from tests.contract._user_fixtures import (
    FAULTS,
    TABLE_NAME,
    CountingHasher,
    FaultInjector,
    ParamRecorder,
    RecordingRevoker,
    failing_revoker_error,
    fast_hasher,
    fresh_table,
    scan_items,
    transaction_canceled,
)
from tokencore.audit import hash_identifier
from tokencore.errors import (
    InvalidCredentials,
    InvalidRequest,
    PasswordTooShort,
    StoreConflict,
    StoreUnavailable,
    UserDisabled,
    UserExists,
    UserNotFound,
)
from tokencore.revocations import bucket_key, bucket_start, user_entries_of
from tokencore.users import (
    REASON_PASSWORD_CHANGED,
    REASON_USER_DISABLED,
    DynamoDBUserStore,
    InMemoryUserStore,
    RevokeAllSessions,
    User,
    UserPage,
    UserService,
    UserStore,
    UserSummary,
)

PASSWORD = "correct horse battery staple"
FULLWIDTH_ALICE = "\uff21\uff4c\uff49\uff43\uff45"  # "Alice" in fullwidth letters
FULLWIDTH_ALICE_UPPER = "\uff21\uff2c\uff29\uff23\uff25"


@dataclass
class Backend:
    name: str
    store: UserStore
    client: Any  # the moto DynamoDB client, None for the memory backend


@pytest.fixture(params=["memory", "dynamodb"])
def backend(
    request: pytest.FixtureRequest, clock: ManualClock, moto_client: Any
) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", InMemoryUserStore(), None)
        return
    with fresh_table(moto_client) as client:
        yield Backend("dynamodb", DynamoDBUserStore(TABLE_NAME, clock, boto3_client=client), client)


@pytest.fixture
def store(backend: Backend) -> UserStore:
    return backend.store


@pytest.fixture
def revoker() -> RecordingRevoker:
    return RecordingRevoker()


@pytest.fixture
def service(store: UserStore, revoker: RecordingRevoker, clock: ManualClock) -> UserService:
    return UserService(store, revoker, clock, hasher=fast_hasher())


@pytest.fixture
def dynamo(clock: ManualClock, moto_client: Any) -> Iterator[Backend]:
    """The DynamoDB backend alone, for what only it can show: items, faults, request shapes."""
    with fresh_table(moto_client) as client:
        yield Backend("dynamodb", DynamoDBUserStore(TABLE_NAME, clock, boto3_client=client), client)


@pytest.fixture
def dynamo_service(dynamo: Backend, revoker: RecordingRevoker, clock: ManualClock) -> UserService:
    return UserService(dynamo.store, revoker, clock, hasher=fast_hasher())


# --- create and read -------------------------------------------------------------------------


def test_create_then_get_by_id_and_by_username(service: UserService, store: UserStore) -> None:
    created = service.create_user(
        "  Alice ", PASSWORD, email="alice@example.com", roles=["user", "admin", "user"]
    )
    assert created.username == "Alice"
    assert created.normalized_username == "alice"
    assert created.roles == ("admin", "user")
    assert created.disabled is False
    assert created.password_changed_at == created.created_at == 1_800_000_000.0
    assert created.password_hash.startswith("$argon2id$")
    assert store.get(created.user_id) == created
    assert store.get_by_username("ALICE") == created
    assert store.get_by_username(FULLWIDTH_ALICE) == created


def test_user_without_email_round_trips(service: UserService, store: UserStore) -> None:
    created = service.create_user("bob", PASSWORD)
    assert created.email is None
    assert created.roles == ()
    assert store.get(created.user_id) == created


@pytest.mark.parametrize(
    "variant",
    [
        "alice",
        "ALICE",
        "aLiCe",
        FULLWIDTH_ALICE,
        "\u1d2c" + "lice",  # MODIFIER LETTER CAPITAL A
        " alice\u3000",  # surrounding ASCII and ideographic spaces
    ],
)
def test_duplicate_username_in_any_case_or_unicode_form_is_refused(
    service: UserService, store: UserStore, variant: str
) -> None:
    first = service.create_user("Alice", PASSWORD)
    with pytest.raises(UserExists) as caught:
        service.create_user(variant, "another password")
    assert variant.strip() not in caught.value.message
    assert store.get_by_username("alice") == first


def test_duplicate_leaves_exactly_the_first_users_items(
    dynamo_service: UserService, dynamo: Backend
) -> None:
    first = dynamo_service.create_user("Alice", PASSWORD)
    with pytest.raises(UserExists):
        dynamo_service.create_user("ALICE", PASSWORD)
    keys = sorted(item["pk"]["S"] for item in scan_items(dynamo.client))
    assert keys == sorted([f"USER#{first.user_id}", "USERNAME#alice"])


def test_concurrent_creates_of_one_name_have_exactly_one_winner(clock: ManualClock) -> None:
    service = UserService(InMemoryUserStore(), RecordingRevoker(), clock, hasher=fast_hasher())
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(index: int) -> None:
        barrier.wait()
        try:
            service.create_user("ALICE" if index % 2 else "alice", PASSWORD)
            result = "created"
        except UserExists:
            result = "exists"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * 19


def test_unknown_or_malformed_ids_and_names_are_not_found(store: UserStore) -> None:
    with pytest.raises(UserNotFound):
        store.get("0b7e8f2c-0000-4000-8000-000000000000")
    with pytest.raises(UserNotFound):
        store.get("USER#x/../y")
    with pytest.raises(UserNotFound):
        store.get_by_username("nobody")
    with pytest.raises(InvalidRequest):
        store.get_by_username("two words")


@pytest.mark.parametrize(
    ("username", "password", "email", "roles"),
    [
        ("", PASSWORD, None, ()),
        ("a" * 65, PASSWORD, None, ()),
        ("ali ce", PASSWORD, None, ()),
        ("ali\u200dce", PASSWORD, None, ()),
        ("alice", "", None, ()),
        ("alice", "x" * 1025, None, ()),
        ("alice", PASSWORD, "not-an-email", ()),
        ("alice", PASSWORD, None, ("Admin",)),
        ("alice", PASSWORD, None, "admin"),
    ],
)
def test_create_refuses_bad_fields_and_writes_nothing(
    service: UserService,
    backend: Backend,
    username: str,
    password: str,
    email: str | None,
    roles: tuple[str, ...],
) -> None:
    with pytest.raises(InvalidRequest):
        service.create_user(username, password, email=email, roles=roles)
    with pytest.raises((UserNotFound, InvalidRequest)):
        backend.store.get_by_username(username)
    if backend.client is not None:
        assert scan_items(backend.client) == []


def test_store_refuses_an_inconsistent_user(store: UserStore) -> None:
    user = User(
        user_id="u1",
        username="Alice",
        normalized_username="Alice",  # not normalized
        email=None,
        password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        roles=(),
        disabled=False,
        password_changed_at=1.0,
        created_at=1.0,
    )
    with pytest.raises(InvalidRequest):
        store.create(user)


# --- roles, disable, enable ------------------------------------------------------------------


def test_set_roles_replaces_and_validates(service: UserService, store: UserStore) -> None:
    user = service.create_user("alice", PASSWORD, roles=["user"])
    updated = service.set_roles(user.user_id, ["admin", "billing:read", "admin"])
    assert updated.roles == ("admin", "billing:read")
    assert store.get(user.user_id).roles == ("admin", "billing:read")
    assert service.set_roles(user.user_id, []).roles == ()
    with pytest.raises(InvalidRequest):
        service.set_roles(user.user_id, ["has space"])
    with pytest.raises(InvalidRequest):
        service.set_roles(user.user_id, "admin")
    with pytest.raises(InvalidRequest):
        service.set_roles(user.user_id, [f"r{i}" for i in range(21)])
    with pytest.raises(UserNotFound):
        service.set_roles("no-such-user", ["admin"])
    assert store.get(user.user_id).roles == ()


def test_disable_writes_first_then_revokes_every_session(
    service: UserService, store: UserStore, revoker: RecordingRevoker
) -> None:
    user = service.create_user("alice", PASSWORD)
    seen_disabled: list[bool] = []
    revoker.probe = lambda user_id: seen_disabled.append(store.get(user_id).disabled)

    assert service.disable_user(user.user_id) == 3

    assert seen_disabled == [True]  # the flag was stored before revocation began
    assert revoker.calls == [(user.user_id, REASON_USER_DISABLED)]
    with pytest.raises(UserDisabled):
        service.get_user(user.user_id)
    assert service.get_user(user.user_id, include_disabled=True).disabled is True


def test_revoke_all_adapter_passes_user_and_reason_through(
    store: UserStore, clock: ManualClock
) -> None:
    class SessionsWithRevokeAll:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def revoke_all(self, user_id: str, reason: str) -> int:
            self.calls.append((user_id, reason))
            return 2

    sessions = SessionsWithRevokeAll()
    service = UserService(store, RevokeAllSessions(sessions), clock, hasher=fast_hasher())
    user = service.create_user("alice", PASSWORD)
    assert service.disable_user(user.user_id) == 2
    service.change_password(user.user_id, "new password")
    assert sessions.calls == [
        (user.user_id, REASON_USER_DISABLED),
        (user.user_id, REASON_PASSWORD_CHANGED),
    ]


def test_enable_restores_access_without_revoking(
    service: UserService, revoker: RecordingRevoker
) -> None:
    user = service.create_user("alice", PASSWORD)
    service.disable_user(user.user_id)
    revoker.calls.clear()
    assert service.enable_user(user.user_id).disabled is False
    assert service.get_user(user.user_id).user_id == user.user_id
    assert service.authenticate("alice", PASSWORD).user_id == user.user_id
    assert revoker.calls == []


def test_disable_unknown_user_revokes_nothing(
    service: UserService, revoker: RecordingRevoker
) -> None:
    with pytest.raises(UserNotFound):
        service.disable_user("no-such-user")
    assert revoker.calls == []


def test_get_user_rereads_role_changes(service: UserService) -> None:
    user = service.create_user("alice", PASSWORD, roles=["user"])
    service.set_roles(user.user_id, ["admin"])
    assert service.get_user(user.user_id).roles == ("admin",)


# --- passwords -------------------------------------------------------------------------------


def test_change_password_writes_first_then_revokes(
    service: UserService, store: UserStore, revoker: RecordingRevoker, clock: ManualClock
) -> None:
    user = service.create_user("alice", PASSWORD)
    clock.advance(3600)
    seen: list[float] = []
    revoker.probe = lambda user_id: seen.append(store.get(user_id).password_changed_at)

    changed = service.change_password(user.user_id, "a brand new passphrase")

    assert seen == [1_800_003_600.0]
    assert changed.password_changed_at == 1_800_003_600.0
    assert changed.created_at == user.created_at
    assert revoker.calls == [(user.user_id, REASON_PASSWORD_CHANGED)]
    assert service.authenticate("alice", "a brand new passphrase").user_id == user.user_id
    with pytest.raises(InvalidCredentials):
        service.authenticate("alice", PASSWORD)


def test_change_password_refuses_a_bad_password_before_writing(
    service: UserService, store: UserStore, revoker: RecordingRevoker
) -> None:
    user = service.create_user("alice", PASSWORD)
    with pytest.raises(InvalidRequest):
        service.change_password(user.user_id, "")
    assert store.get(user.user_id) == user
    assert revoker.calls == []


@pytest.mark.parametrize("operation", ["disable", "change_password"])
def test_failed_revocation_keeps_the_change_and_raises(
    service: UserService, store: UserStore, revoker: RecordingRevoker, operation: str
) -> None:
    user = service.create_user("alice", PASSWORD)
    revoker.fail_with = failing_revoker_error()

    def act() -> None:
        if operation == "disable":
            service.disable_user(user.user_id)
        else:
            service.change_password(user.user_id, "new password")

    with pytest.raises(StoreUnavailable):
        act()

    stored = store.get(user.user_id)
    if operation == "disable":
        assert stored.disabled is True
    else:
        assert stored.password_hash != user.password_hash
        with pytest.raises(InvalidCredentials):
            service.authenticate("alice", PASSWORD)
    assert revoker.calls == []

    # The caller retries; both steps are idempotent and the retry completes the revocation.
    revoker.fail_with = None
    if operation == "disable":
        service.disable_user(user.user_id)
        assert revoker.calls == [(user.user_id, REASON_USER_DISABLED)]
    else:
        service.change_password(user.user_id, "new password")
        assert revoker.calls == [(user.user_id, REASON_PASSWORD_CHANGED)]


@pytest.mark.parametrize(
    "password",
    [
        "p" * 128,
        "パスワード🔑 with ünïcödé",
        "ends with a space ",
        " starts with a space",
        "tab\tand\nnewline",
        "x" * 1024,
    ],
)
def test_passwords_are_taken_exactly_as_given(service: UserService, password: str) -> None:
    user = service.create_user("alice", password)
    assert service.authenticate("alice", password).user_id == user.user_id
    for near_miss in {password.strip(), password + " ", password[:-1], password.upper()}:
        if near_miss and near_miss != password and len(near_miss) <= 1024:
            with pytest.raises(InvalidCredentials):
                service.authenticate("alice", near_miss)


def test_unicode_normalization_forms_are_different_passwords(service: UserService) -> None:
    composed = unicodedata.normalize("NFC", "un café noir")
    decomposed = unicodedata.normalize("NFD", "un café noir")
    assert composed != decomposed
    service.create_user("alice", composed)
    assert service.authenticate("alice", composed).username == "alice"
    with pytest.raises(InvalidCredentials):
        service.authenticate("alice", decomposed)


# --- listing ---------------------------------------------------------------------------------


def _every_page(store: UserStore, limit: int) -> list[UserPage]:
    pages = [store.list_users(limit)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 100, "the cursor never ran out"
        pages.append(store.list_users(limit, pages[-1].next_cursor))
    return pages


def test_pages_list_every_user_once_without_the_hash(
    service: UserService, store: UserStore
) -> None:
    created = {
        user.user_id: user
        for user in (service.create_user(f"user{n}", PASSWORD, roles=["user"]) for n in range(7))
    }
    pages = _every_page(store, 3)
    listed = [summary for page in pages for summary in page.users]
    assert all(len(page.users) <= 3 for page in pages)
    assert sorted(s.user_id for s in listed) == sorted(created)
    for summary in listed:
        assert summary == UserSummary.of(created[summary.user_id])
        assert not hasattr(summary, "password_hash")
    # One page that holds them all says there is nothing after it.
    whole = store.list_users(7)
    assert len(whole.users) == 7
    assert whole.next_cursor is None
    assert store.list_users(1000).next_cursor is None


def test_an_empty_store_lists_nothing(store: UserStore) -> None:
    assert store.list_users() == UserPage((), None)


@pytest.mark.parametrize(
    ("limit", "cursor"),
    [(0, None), (1001, None), (True, None), (10, "not a user id"), (10, "USER#x"), (10, "")],
)
def test_a_bad_page_request_is_refused(store: UserStore, limit: Any, cursor: str | None) -> None:
    with pytest.raises(InvalidRequest):
        store.list_users(limit, cursor)


def test_listing_scans_past_other_items_and_never_reads_the_hash(
    dynamo_service: UserService, dynamo: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions, claims and counters share the table: a page cut short of the Scan's own page,
    and Scan pages holding no user, lose and repeat nothing."""
    import tokencore.users.dynamodb as dynamodb_users

    monkeypatch.setattr(dynamodb_users, "SCAN_PAGE_ITEMS", 2)
    ids = {dynamo_service.create_user(f"user{n}", PASSWORD).user_id for n in range(5)}
    for n in range(9):
        dynamo.client.put_item(
            TableName=TABLE_NAME,
            Item={"pk": {"S": f"RATE#login_ip#{n:064x}"}, "sk": {"S": "WINDOW#0"}},
        )
    with ParamRecorder(dynamo.client, "Scan") as recorder:
        pages = _every_page(dynamo.store, 2)
    assert sorted(s.user_id for page in pages for s in page.users) == sorted(ids)
    assert len(recorder.params) > len(pages)  # some pages took several Scan requests
    for params in recorder.params:
        assert params["ConsistentRead"] is True
        assert "password_hash" not in params["ProjectionExpression"]
        assert "password_hash" not in params["ExpressionAttributeNames"].values()


# --- the minimum length of a new password (PASSWORD_MIN_LENGTH) -------------------------------


def test_a_new_account_needs_eight_characters_counted_as_code_points(
    store: UserStore, clock: ManualClock
) -> None:
    hasher = CountingHasher()
    service = UserService(store, RecordingRevoker(), clock, hasher=hasher)
    with pytest.raises(PasswordTooShort) as caught:
        service.create_user("alice", "7 chars")
    assert caught.value.message == "password must be at least 8 characters"
    assert caught.value.code == "password_too_short"
    assert isinstance(caught.value, InvalidRequest)  # a 400 wherever a handler meets it
    assert hasher.hash_calls == 0  # refused before any Argon2 work
    with pytest.raises(UserNotFound):
        store.get_by_username("alice")
    # Eight code points, however many bytes: four of them take 4 bytes each in UTF-8.
    eight = "\U0001f511\U0001f511\U0001f511\U0001f511abcd"
    assert len(eight) == 8
    user = service.create_user("alice", eight)
    assert service.authenticate("alice", eight).user_id == user.user_id


def test_the_minimum_is_configurable(store: UserStore, clock: ManualClock) -> None:
    strict = UserService(store, RecordingRevoker(), clock, fast_hasher(), min_password_length=12)
    with pytest.raises(PasswordTooShort, match="at least 12 characters"):
        strict.create_user("alice", "11 chars ok")
    strict.create_user("alice", "twelve chars")
    lenient = UserService(store, RecordingRevoker(), clock, fast_hasher(), min_password_length=1)
    lenient.create_user("bob", "b")


def test_a_password_change_under_the_minimum_writes_and_revokes_nothing(
    service: UserService, store: UserStore, revoker: RecordingRevoker, clock: ManualClock
) -> None:
    user = service.create_user("alice", PASSWORD)
    clock.advance(60)
    with pytest.raises(PasswordTooShort):
        service.change_password(user.user_id, "short")
    assert store.get(user.user_id) == user
    assert revoker.calls == []
    changed, revoked = service.replace_password(user.user_id, "long enough")
    assert changed.password_changed_at == user.password_changed_at + 60
    assert revoked == 3  # what the revoker reported
    assert revoker.calls == [(user.user_id, REASON_PASSWORD_CHANGED)]


def test_login_never_checks_the_minimum(store: UserStore, clock: ManualClock) -> None:
    """An account set up under a lower minimum keeps working after the minimum is raised; a
    short password is refused by its hash, never by its length."""
    UserService(store, RecordingRevoker(), clock, fast_hasher(), min_password_length=4).create_user(
        "alice", "four"
    )
    service = UserService(store, RecordingRevoker(), clock, fast_hasher())
    assert service.authenticate("alice", "four").username == "alice"
    assert _failure(service, "alice", "fiv").message == "invalid username or password"


def test_login_username_is_normalized(service: UserService) -> None:
    user = service.create_user("Alice", PASSWORD)
    assert service.authenticate(FULLWIDTH_ALICE_UPPER, PASSWORD).user_id == user.user_id


def test_login_refuses_unbounded_or_empty_passwords_before_any_lookup(
    service: UserService,
) -> None:
    service.create_user("alice", PASSWORD)
    with pytest.raises(InvalidRequest):
        service.authenticate("alice", "x" * 1025)
    with pytest.raises(InvalidRequest):
        service.authenticate("alice", "")
    with pytest.raises(InvalidRequest):
        service.authenticate("alice", "\ud800")  # lone surrogate: not encodable text


# --- enumeration resistance ------------------------------------------------------------------


def _failure(service: UserService, username: str, password: str) -> InvalidCredentials:
    with pytest.raises(InvalidCredentials) as caught:
        service.authenticate(username, password)
    return caught.value


def test_unknown_user_wrong_password_and_disabled_look_the_same(service: UserService) -> None:
    service.create_user("alice", PASSWORD)
    disabled = service.create_user("carol", PASSWORD)
    service.disable_user(disabled.user_id)

    failures = {
        "unknown": _failure(service, "mallory", PASSWORD),
        "malformed": _failure(service, "no such\x00user", PASSWORD),
        "wrong_password": _failure(service, "alice", "wrong password"),
        "disabled_right_password": _failure(service, "carol", PASSWORD),
        "disabled_wrong_password": _failure(service, "carol", "wrong password"),
    }
    assert {type(error) for error in failures.values()} == {InvalidCredentials}
    assert {error.message for error in failures.values()} == {"invalid username or password"}
    assert {error.code for error in failures.values()} == {"invalid_credentials"}
    # Only the audit trail (the cause, never shown to a client) tells the disabled case apart.
    assert isinstance(failures["disabled_right_password"].__cause__, UserDisabled)
    assert all(
        error.__cause__ is None
        for name, error in failures.items()
        if name != "disabled_right_password"
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("mallory", PASSWORD),  # unknown user
        ("no such user", PASSWORD),  # a name that could never be registered
        ("alice", "wrong password"),
        ("alice", "short"),  # under PASSWORD_MIN_LENGTH: just a wrong password at login
        ("mallory", "short"),
        ("alice", PASSWORD),  # success
        ("carol", PASSWORD),  # disabled, right password
    ],
)
def test_every_login_outcome_costs_exactly_one_argon2_verify(
    store: UserStore, clock: ManualClock, username: str, password: str
) -> None:
    hasher = CountingHasher()
    service = UserService(store, RecordingRevoker(), clock, hasher=hasher)
    service.create_user("alice", PASSWORD)
    carol = service.create_user("carol", PASSWORD)
    service.disable_user(carol.user_id)
    service.passwords.dummy_hash()  # the one-time lazy computation is not per-login work
    hasher.verify_calls = 0
    hashes_before = hasher.hash_calls

    with contextlib.suppress(InvalidCredentials):
        service.authenticate(username, password)

    assert hasher.verify_calls == 1
    assert hasher.hash_calls == hashes_before  # no rehash, no lazy dummy computation


def test_corrupt_stored_hash_denies_after_the_same_work(
    dynamo: Backend, clock: ManualClock
) -> None:
    hasher = CountingHasher()
    service = UserService(dynamo.store, RecordingRevoker(), clock, hasher=hasher)
    user = service.create_user("alice", PASSWORD)
    for key in (
        {"pk": {"S": f"USER#{user.user_id}"}, "sk": {"S": "PROFILE"}},
        {"pk": {"S": "USERNAME#alice"}, "sk": {"S": "USERNAME"}},  # the profile's copy
    ):
        dynamo.client.update_item(
            TableName=TABLE_NAME,
            Key=key,
            UpdateExpression="SET password_hash = :h",
            ExpressionAttributeValues={":h": {"S": "$argon2id$garbage"}},
        )
    service.passwords.dummy_hash()
    hasher.verify_calls = 0
    with pytest.raises(InvalidCredentials):
        service.authenticate("alice", PASSWORD)
    assert hasher.verify_calls == 2  # the failed parse, then one full dummy verify


def test_nothing_secret_reaches_logs_errors_or_reprs(
    service: UserService, caplog: pytest.LogCaptureFixture
) -> None:
    # Our own loggers, at their most verbose. (botocore's DEBUG output echoes whole responses,
    # hashes included: it must never be enabled in production; see the docs.)
    caplog.set_level(logging.DEBUG, logger="tokencore")
    secret_password = "S3cret-Passw0rd-in-the-logs?"
    user = service.create_user("Zelda_Secret_Name", secret_password, roles=["admin"])
    messages: list[str] = []
    for username, password in [
        ("Zelda_Secret_Name", "Wr0ng-Secret-Attempt"),
        ("Unknown_Secret_Name", secret_password),
    ]:
        try:
            service.authenticate(username, password)
        except InvalidCredentials as exc:
            messages.append(str(exc))
    with pytest.raises(UserExists) as exists:
        service.create_user("zelda_secret_name", secret_password)
    messages.append(str(exists.value))
    service.disable_user(user.user_id)
    service.change_password(user.user_id, "Another-Secret-Passw0rd")

    ours = [record for record in caplog.records if record.name.startswith("tokencore")]
    assert ours  # the service does log: the assertion below is not vacuous
    extras = [str(record.__dict__) for record in ours]
    text = (
        "\n".join(record.getMessage() for record in ours)
        + "\n".join(extras)
        + "\n".join(messages)
        + repr(user)
    )
    for secret in [
        secret_password,
        "Wr0ng-Secret-Attempt",
        "Another-Secret-Passw0rd",
        "Zelda_Secret_Name".lower(),
        "Zelda_Secret_Name",
        "Unknown_Secret_Name",
        user.password_hash,
        "$argon2",
    ]:
        assert secret not in text
    # The logs do name the account, by the hash of its id (as security events do).
    assert hash_identifier(user.user_id) in "\n".join(extras)
    assert user.user_id not in "\n".join(extras)


# --- rehash ----------------------------------------------------------------------------------


def test_login_rehashes_a_hash_made_with_old_parameters(
    store: UserStore, revoker: RecordingRevoker, clock: ManualClock
) -> None:
    old = UserService(store, revoker, clock, hasher=fast_hasher(time_cost=1))
    user = old.create_user("alice", PASSWORD)
    new_hasher = fast_hasher(time_cost=2)
    assert new_hasher.check_needs_rehash(user.password_hash)
    clock.advance(60)

    new = UserService(store, revoker, clock, hasher=new_hasher)
    logged_in = new.authenticate("alice", PASSWORD)

    stored = store.get(user.user_id)
    assert stored.password_hash == logged_in.password_hash != user.password_hash
    assert not new_hasher.check_needs_rehash(stored.password_hash)
    assert stored.password_changed_at == user.password_changed_at  # not a password change
    assert revoker.calls == []  # and no sessions revoked
    assert new.authenticate("alice", PASSWORD).password_hash == stored.password_hash


def test_current_hash_is_not_rehashed(service: UserService, store: UserStore) -> None:
    user = service.create_user("alice", PASSWORD)
    service.authenticate("alice", PASSWORD)
    assert store.get(user.user_id).password_hash == user.password_hash


def test_rehash_never_overwrites_a_newer_password(service: UserService, store: UserStore) -> None:
    user = service.create_user("alice", PASSWORD)
    changed = service.change_password(user.user_id, "newer password")
    assert not store.replace_password_hash(user.user_id, user.password_hash, "$argon2id$stale")
    assert store.get(user.user_id).password_hash == changed.password_hash
    assert not store.replace_password_hash("no-such-user", user.password_hash, "$argon2id$x")


def test_login_racing_a_password_change_is_denied(
    store: UserStore, revoker: RecordingRevoker, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = UserService(store, revoker, clock, hasher=fast_hasher(time_cost=1))
    user = old.create_user("alice", PASSWORD)
    new = UserService(store, revoker, clock, hasher=fast_hasher(time_cost=2))
    original = store.replace_password_hash

    def change_first(user_id: str, expected_hash: str, new_hash: str) -> bool:
        old.change_password(user_id, "changed meanwhile")  # lands between verify and swap
        return original(user_id, expected_hash, new_hash)

    monkeypatch.setattr(store, "replace_password_hash", change_first)
    with pytest.raises(InvalidCredentials):
        new.authenticate("alice", PASSWORD)
    monkeypatch.undo()
    assert old.authenticate("alice", "changed meanwhile").user_id == user.user_id


def test_revoke_all_marks_the_user_first_then_revokes(
    service: UserService, store: UserStore, revoker: RecordingRevoker, clock: ManualClock
) -> None:
    user = service.create_user("alice", PASSWORD)
    assert store.get(user.user_id).sessions_revoked_at == 0.0
    clock.advance(10)

    def marker_is_written_first(user_id: str) -> None:
        assert store.get(user_id).sessions_revoked_at == clock.now()

    revoker.probe = marker_is_written_first
    assert service.revoke_all_sessions(user.user_id, "admin") == 3
    assert revoker.calls == [(user.user_id, "admin")]
    assert store.get_by_username("alice").sessions_revoked_at == clock.now()


def test_revoke_all_keeps_the_marker_when_revocation_fails(
    service: UserService, store: UserStore, revoker: RecordingRevoker, clock: ManualClock
) -> None:
    user = service.create_user("alice", PASSWORD)
    revoker.fail_with = failing_revoker_error()
    with pytest.raises(StoreUnavailable):
        service.revoke_all_sessions(user.user_id, "admin")
    assert store.get(user.user_id).sessions_revoked_at == clock.now()  # refresh refuses them


# --- DynamoDB specifics ----------------------------------------------------------------------


def test_items_follow_the_single_table_layout(dynamo_service: UserService, dynamo: Backend) -> None:
    user = dynamo_service.create_user("Alice", PASSWORD, email="a@example.com", roles=["admin"])
    items = {item["pk"]["S"]: item for item in scan_items(dynamo.client)}
    assert set(items) == {"USERNAME#alice", f"USER#{user.user_id}"}
    claim = items["USERNAME#alice"]
    profile = items[f"USER#{user.user_id}"]
    assert profile["sk"] == {"S": "PROFILE"}
    assert profile["username"] == {"S": "Alice"}
    assert profile["roles"] == {"L": [{"S": "admin"}]}
    assert "gsi1pk" not in profile  # never listed among the user's sessions
    assert "expires_at" not in profile
    # The claim is the profile's copy under the name's key: a login reads it alone.
    assert claim["sk"] == {"S": "USERNAME"}
    assert {k: v for k, v in claim.items() if k not in ("pk", "sk")} == {
        k: v for k, v in profile.items() if k not in ("pk", "sk")
    }


def _claim_and_profile(dynamo: Backend, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    items = {item["pk"]["S"]: item for item in scan_items(dynamo.client)}
    claim = next(v for k, v in items.items() if k.startswith("USERNAME#"))
    profile = items[f"USER#{user_id}"]
    return (
        {k: v for k, v in claim.items() if k not in ("pk", "sk")},
        {k: v for k, v in profile.items() if k not in ("pk", "sk")},
    )


def test_every_change_keeps_the_claims_copy_identical(
    dynamo_service: UserService, dynamo: Backend, clock: ManualClock
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    dynamo_service.set_roles(user.user_id, ["admin", "user"])
    dynamo_service.disable_user(user.user_id)
    dynamo_service.enable_user(user.user_id)
    clock.advance(5)
    dynamo_service.change_password(user.user_id, "a brand new passphrase")
    dynamo.store.mark_sessions_revoked(user.user_id, clock.now())
    assert dynamo.store.replace_password_hash(
        user.user_id, dynamo.store.get(user.user_id).password_hash, fast_hasher().hash("x" * 12)
    )
    claim, profile = _claim_and_profile(dynamo, user.user_id)
    assert claim == profile
    assert dynamo.store.get_by_username("alice") == dynamo.store.get(user.user_id)


def test_changes_write_both_items_in_one_transaction(
    dynamo_service: UserService, dynamo: Backend
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    with ParamRecorder(dynamo.client, "TransactWriteItems") as recorder:
        dynamo_service.set_roles(user.user_id, ["admin"])
    (params,) = recorder.params
    keys = sorted(action["Update"]["Key"]["pk"]["S"] for action in params["TransactItems"])
    assert keys == sorted([f"USER#{user.user_id}", "USERNAME#alice"])


def test_an_old_claim_without_the_copy_still_logs_in(
    dynamo_service: UserService, dynamo: Backend
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    # A claim as the first version wrote it: the user id only.
    dynamo.client.put_item(
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": "USERNAME#alice"},
            "sk": {"S": "USERNAME"},
            "user_id": {"S": user.user_id},
        },
    )
    with ParamRecorder(dynamo.client, "GetItem") as recorder:
        assert dynamo_service.authenticate("alice", PASSWORD).user_id == user.user_id
    assert len(recorder.params) == 2  # the claim, then the profile it names
    dynamo_service.set_roles(user.user_id, ["admin"])  # updates still reach both items
    assert dynamo.store.get_by_username("alice").roles == ("admin",)
    new_hash = fast_hasher().hash("another passphrase")
    assert dynamo.store.replace_password_hash(
        user.user_id, dynamo.store.get(user.user_id).password_hash, new_hash
    )


def test_reads_are_consistent(dynamo_service: UserService, dynamo: Backend) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    with ParamRecorder(dynamo.client, "GetItem") as recorder:
        dynamo.store.get(user.user_id)
        dynamo.store.get_by_username("alice")
    assert len(recorder.params) == 2  # the profile; the claim, which carries its copy
    assert all(params["ConsistentRead"] is True for params in recorder.params)


def test_a_name_is_one_read_whether_or_not_it_exists(
    dynamo_service: UserService, dynamo: Backend
) -> None:
    dynamo_service.create_user("alice", PASSWORD)
    with ParamRecorder(dynamo.client, "GetItem") as known:
        dynamo.store.get_by_username("alice")
    with ParamRecorder(dynamo.client, "GetItem") as unknown, pytest.raises(UserNotFound):
        dynamo.store.get_by_username("nobody")
    assert len(known.params) == len(unknown.params) == 1


def test_malformed_item_is_a_store_fault(dynamo: Backend) -> None:
    dynamo.client.put_item(
        TableName=TABLE_NAME,
        Item={"pk": {"S": "USER#broken"}, "sk": {"S": "PROFILE"}, "user_id": {"S": "broken"}},
    )
    with pytest.raises(StoreUnavailable) as caught:
        dynamo.store.get("broken")
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failed_create_writes_nothing(
    dynamo_service: UserService, dynamo: Backend, fault: str
) -> None:
    error = FAULTS[fault]("TransactWriteItems")
    with (
        FaultInjector(dynamo.client, "TransactWriteItems", error),
        pytest.raises(StoreUnavailable) as caught,
    ):
        dynamo_service.create_user("alice", PASSWORD)
    assert caught.value.__cause__ is not None
    assert "alice" not in caught.value.message
    assert scan_items(dynamo.client) == []
    dynamo_service.create_user("alice", PASSWORD)  # and a retry works


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        (["None", "ThrottlingError"], StoreUnavailable),
        (["TransactionConflict", "None"], StoreConflict),
        (["None", "ConditionalCheckFailed"], StoreConflict),
        (["ConditionalCheckFailed", "None"], UserExists),
    ],
)
def test_canceled_transactions_map_by_reason(
    dynamo_service: UserService, dynamo: Backend, reasons: list[str], expected: type[Exception]
) -> None:
    with (
        FaultInjector(dynamo.client, "TransactWriteItems", transaction_canceled(reasons)),
        pytest.raises(expected) as caught,
    ):
        dynamo_service.create_user("alice", PASSWORD)
    assert caught.value.__cause__ is not None
    assert scan_items(dynamo.client) == []


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("operation", ["set_roles", "disable", "change_password"])
def test_failed_update_changes_nothing_and_revokes_nothing(
    dynamo_service: UserService,
    dynamo: Backend,
    revoker: RecordingRevoker,
    fault: str,
    operation: str,
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD, roles=["user"])
    actions: dict[str, Callable[[], object]] = {
        "set_roles": lambda: dynamo_service.set_roles(user.user_id, ["admin"]),
        "disable": lambda: dynamo_service.disable_user(user.user_id),
        "change_password": lambda: dynamo_service.change_password(user.user_id, "new password"),
    }
    with (
        FaultInjector(
            dynamo.client, "TransactWriteItems", FAULTS[fault]("TransactWriteItems")
        ) as injector,
        pytest.raises(StoreUnavailable) as caught,
    ):
        actions[operation]()
    assert injector.calls == 1
    assert caught.value.__cause__ is not None
    assert dynamo.store.get(user.user_id) == user
    assert dynamo.store.get_by_username("alice") == user  # nor the claim's copy
    assert revoker.calls == []


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failed_read_is_a_store_fault_not_a_rejection(
    dynamo_service: UserService, dynamo: Backend, fault: str
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    with FaultInjector(dynamo.client, "GetItem", FAULTS[fault]("GetItem")):
        with pytest.raises(StoreUnavailable):
            dynamo_service.authenticate("alice", PASSWORD)
        with pytest.raises(StoreUnavailable):
            dynamo_service.get_user(user.user_id)


def test_failed_rehash_write_does_not_fail_the_login(
    dynamo: Backend, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = dynamo.store
    user = UserService(store, RecordingRevoker(), clock, hasher=fast_hasher(1)).create_user(
        "alice", PASSWORD
    )
    new = UserService(store, RecordingRevoker(), clock, hasher=fast_hasher(2))
    with FaultInjector(
        dynamo.client, "TransactWriteItems", FAULTS["throttling"]("TransactWriteItems")
    ):
        assert new.authenticate("alice", PASSWORD).user_id == user.user_id
    assert store.get(user.user_id).password_hash == user.password_hash
    assert "password rehash postponed" in caplog.text


# --- the revocation list's user entries (tokencore.revocations) -------------------------------


def _user_entries(dynamo: Backend, at: float) -> dict[str, int]:
    item = dynamo.client.get_item(
        TableName=TABLE_NAME, Key=bucket_key(bucket_start(at)), ConsistentRead=True
    ).get("Item", {})
    return user_entries_of(item)


def test_the_revoke_all_marker_lists_the_user_in_the_same_transaction(
    dynamo_service: UserService, dynamo: Backend, clock: ManualClock
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    clock.advance(0.75)
    at = clock.now()
    with ParamRecorder(dynamo.client, "TransactWriteItems") as recorder:
        dynamo.store.mark_sessions_revoked(user.user_id, at)
    (params,) = recorder.params
    keys = sorted(action["Update"]["Key"]["pk"]["S"] for action in params["TransactItems"])
    assert keys == sorted([f"USER#{user.user_id}", "USERNAME#alice", f"REVOKED#{bucket_start(at)}"])
    assert _user_entries(dynamo, at) == {user.user_id: math.floor(at)}


def test_a_refused_marker_write_lists_nobody(
    dynamo: Backend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = dynamo.store
    assert isinstance(store, DynamoDBUserStore)
    service = UserService(store, RecordingRevoker(), clock, hasher=fast_hasher())
    user = service.create_user("alice", PASSWORD)
    later = clock.now() + 600
    store.mark_sessions_revoked(user.user_id, later)
    # A revoke-all that read the user before that later one landed: its conditional write is
    # refused (the marker never moves back), and so is its list entry with it.
    load = store._load
    reads = iter([user])
    monkeypatch.setattr(store, "_load", lambda user_id: next(reads, None) or load(user_id))
    assert store.mark_sessions_revoked(user.user_id, clock.now()).sessions_revoked_at == later
    assert _user_entries(dynamo, clock.now()) == {}
    assert _user_entries(dynamo, later) == {user.user_id: math.floor(later)}


def test_disabling_and_a_new_password_list_the_user_and_enabling_does_not(
    dynamo_service: UserService, dynamo: Backend, clock: ManualClock
) -> None:
    user = dynamo_service.create_user("alice", PASSWORD)
    dynamo_service.disable_user(user.user_id)
    assert _user_entries(dynamo, clock.now()) == {user.user_id: math.floor(clock.now())}
    clock.advance(120)
    dynamo_service.enable_user(user.user_id)
    dynamo_service.set_roles(user.user_id, ["admin"])
    assert _user_entries(dynamo, clock.now()) == {}
    dynamo_service.change_password(user.user_id, "a brand new passphrase")
    assert _user_entries(dynamo, clock.now()) == {user.user_id: math.floor(clock.now())}


def test_a_refused_disable_lists_nobody(
    dynamo: Backend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = dynamo.store
    assert isinstance(store, DynamoDBUserStore)
    ghost = User(
        user_id="ghost-user",
        username="ghost",
        normalized_username="ghost",
        email=None,
        password_hash=fast_hasher().hash(PASSWORD),
        roles=(),
        disabled=False,
        created_at=clock.now(),
        password_changed_at=clock.now(),
    )
    monkeypatch.setattr(store, "_load", lambda _user_id: ghost)  # read, then deleted
    with pytest.raises(UserNotFound):
        store.set_disabled(ghost.user_id, True)
    assert _user_entries(dynamo, clock.now()) == {}
