"""What the DynamoDB backend sends, what it stores, and how it behaves when DynamoDB fails.

Faults are injected on the store's real client through botocore's ``before-call`` event: a
modeled error response (botocore raises the matching ClientError itself) or a transport error.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tests.clock import ManualClock
from tokencore.errors import ServiceFault, SessionNotFound, StoreUnavailable
from tokencore.revocations import bucket_key, bucket_start, entries_of
from tokencore.sessions import DynamoDBSessionStore, RefreshReuseRevoked, Session, new_jti
from tokencore.sessions.dynamodb import (
    ROTATION_CONDITION,
    not_absolute_expired,
    not_idle_expired,
    presented_is_current,
    session_is_active,
)

from .conftest import (
    REGION,
    Backend,
    Fault,
    FaultInjector,
    RequestLog,
    raising,
    service_error,
    settings_with,
)

USER = "user-1"

FAULTS = [
    service_error("ProvisionedThroughputExceededException"),
    service_error("ThrottlingException"),
    service_error("RequestLimitExceeded"),
    service_error("InternalServerError"),
    service_error("ResourceNotFoundException"),
    raising(EndpointConnectionError),
    raising(ConnectTimeoutError),
    raising(ReadTimeoutError),
]
each_fault = pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__ for f in FAULTS])
# Faults are injected in the client, before any table sees the request, so the whole matrix on
# one backend is enough; dynalite joins where its fallback read changes the request sequence.
on_moto = pytest.mark.parametrize("dynamodb_backend", ["moto"], indirect=True)


def rotate_first(store: DynamoDBSessionStore, session: Session, jti: str | None = None) -> Any:
    return store.rotate(session.session_id, session.current_jti, 1, jti or new_jti())


def assert_unavailable_from_boto(caught: pytest.ExceptionInfo[StoreUnavailable]) -> None:
    assert isinstance(caught.value, ServiceFault)
    assert isinstance(caught.value.__cause__, ClientError | BotoCoreError)


@pytest.fixture
def store(dynamodb_backend: Backend) -> DynamoDBSessionStore:
    store = dynamodb_backend.store()
    assert isinstance(store, DynamoDBSessionStore)
    return store


# --- Requests ----------------------------------------------------------------------------------


def test_rotation_is_exactly_one_conditional_update_item(
    store: DynamoDBSessionStore, request_log: RequestLog
) -> None:
    session = store.create_session(USER)
    request_log.clear()
    successor_jti = new_jti()

    rotate_first(store, session, successor_jti)

    assert request_log.operations == ["UpdateItem"]
    params = request_log.calls[0].params
    assert params["ConditionExpression"] == ROTATION_CONDITION
    for fragment in (presented_is_current, session_is_active, not_idle_expired):
        assert f"({fragment})" in ROTATION_CONDITION
    assert f"({not_absolute_expired})" in ROTATION_CONDITION
    assert params["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert params["ReturnValues"] == "ALL_NEW"
    values = params["ExpressionAttributeValues"]
    assert values[":presented_jti"] == {"S": session.current_jti}
    assert values[":new_jti"] == {"S": successor_jti}
    assert values[":active"] == {"S": "active"}


def test_the_sensitive_path_check_is_one_consistent_get_item(
    store: DynamoDBSessionStore, request_log: RequestLog
) -> None:
    session = store.create_session(USER)
    request_log.clear()

    assert store.get_session(session.session_id) == session

    assert request_log.operations == ["GetItem"]
    assert request_log.calls[0].params["ConsistentRead"] is True


@pytest.mark.parametrize("dynamodb_backend", ["moto"], indirect=True)
def test_a_refused_rotation_is_classified_from_all_old_without_a_read(
    store: DynamoDBSessionStore, request_log: RequestLog, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    issued = rotate_first(store, session)
    clock.advance(1)
    request_log.clear()

    assert rotate_first(store, session).jti == issued.jti  # a grace replay

    assert request_log.operations == ["UpdateItem"]
    store.rotate(session.session_id, issued.jti, issued.generation, new_jti())
    clock.advance(60)
    request_log.clear()
    with pytest.raises(RefreshReuseRevoked):
        rotate_first(store, session)
    # refused, then the revocation with its revocation-list entry
    assert request_log.operations == ["UpdateItem", "TransactWriteItems"]


@pytest.mark.parametrize("dynamodb_backend", ["dynalite"], indirect=True)
def test_without_all_old_a_refusal_is_classified_by_one_consistent_read(
    store: DynamoDBSessionStore, request_log: RequestLog, clock: ManualClock
) -> None:
    # dynalite accepts ReturnValuesOnConditionCheckFailure but returns no item.
    session = store.create_session(USER)
    issued = rotate_first(store, session)
    clock.advance(1)
    request_log.clear()

    assert rotate_first(store, session).jti == issued.jti

    assert request_log.operations == ["UpdateItem", "GetItem"]
    assert request_log.calls[1].params["ConsistentRead"] is True


@pytest.mark.parametrize("dynamodb_backend", ["dynalite"], indirect=True)
def test_the_store_takes_its_endpoint_from_aws_endpoint_url(
    store: DynamoDBSessionStore, dynalite_endpoint: str
) -> None:
    # The dynalite client was built by DynamoDBSessionStore with AWS_ENDPOINT_URL set.
    assert store.client.meta.endpoint_url == dynalite_endpoint
    assert store.client.meta.region_name == REGION


@pytest.mark.transactions
def test_the_item_follows_the_table_layout(
    store: DynamoDBSessionStore, dynamodb_backend: Backend, clock: ManualClock
) -> None:
    session = store.create_session(USER, device_id="device-1")
    item = dynamodb_backend.raw_item(session.session_id)
    assert item is not None

    assert item["pk"] == {"S": f"SESSION#{session.session_id}"}
    assert item["sk"] == {"S": "META"}
    assert item["gsi1pk"] == {"S": f"USER#{USER}"}
    assert item["gsi1sk"] == {
        "S": f"SESSION#{math.floor(session.created_at):012d}#{session.session_id}"
    }
    assert int(item["expires_at"]["N"]) == session.idle_expires_at
    assert "previous_jti" not in item  # absent, never an empty or null placeholder
    assert "user_agent" not in item

    clock.advance(100)
    rotated = rotate_first(store, session)
    item = dynamodb_backend.raw_item(session.session_id)
    assert item is not None
    assert int(item["expires_at"]["N"]) == rotated.session.idle_expires_at

    store.revoke(session.session_id)
    item = dynamodb_backend.raw_item(session.session_id)
    assert item is not None
    assert item["status"] == {"S": "revoked"}
    assert "gsi1pk" not in item  # a revoked session leaves the sparse by_user index
    assert "gsi1sk" not in item


def test_a_malformed_item_fails_closed_as_a_fault(
    store: DynamoDBSessionStore, dynamodb_backend: Backend
) -> None:
    session = store.create_session(USER)
    dynamodb_backend.client.update_item(
        TableName=dynamodb_backend.table_name,
        Key={"pk": {"S": f"SESSION#{session.session_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET #status = :odd",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":odd": {"S": "resurrected"}},
    )
    with pytest.raises(StoreUnavailable, match="malformed"):
        store.get_session(session.session_id)


# --- Faults: never reuse, never a revocation ---------------------------------------------------


@on_moto
@each_fault
def test_a_fault_on_create_creates_nothing(
    store: DynamoDBSessionStore, faults: FaultInjector, fault: Fault
) -> None:
    faults.fail(fault, "PutItem")
    with pytest.raises(StoreUnavailable) as caught:
        store.create_session(USER)
    assert_unavailable_from_boto(caught)
    assert faults.injected == 1
    faults.clear()
    assert store.list_sessions(USER) == []


@on_moto
@each_fault
def test_a_fault_on_rotation_revokes_nothing_and_the_token_still_works(
    store: DynamoDBSessionStore, faults: FaultInjector, fault: Fault, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    clock.advance(60)
    faults.fail(fault, "UpdateItem", "GetItem")

    with pytest.raises(StoreUnavailable) as caught:
        rotate_first(store, session)

    assert_unavailable_from_boto(caught)
    faults.clear()
    assert store.get_session(session.session_id) == session
    retried = rotate_first(store, session)
    assert (retried.generation, retried.grace_replay) == (2, False)


@pytest.mark.transactions
@each_fault
def test_a_fault_while_revoking_for_reuse_revokes_nothing(
    store: DynamoDBSessionStore, faults: FaultInjector, fault: Fault, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    issued = rotate_first(store, session)
    clock.advance(3600)
    faults.fail(fault, "TransactWriteItems")  # the refused rotation passes, the revocation fails

    with pytest.raises(StoreUnavailable):
        rotate_first(store, session)

    faults.clear()
    assert store.get_session(session.session_id) == issued.session
    with pytest.raises(RefreshReuseRevoked):  # detected again once the store answers
        rotate_first(store, session)


@on_moto
@each_fault
def test_a_fault_on_revoke_revokes_nothing(
    store: DynamoDBSessionStore, faults: FaultInjector, fault: Fault
) -> None:
    session = store.create_session(USER)
    faults.fail(fault, "TransactWriteItems")  # the revocation and its list entry
    with pytest.raises(StoreUnavailable) as caught:
        store.revoke(session.session_id)
    assert_unavailable_from_boto(caught)
    faults.clear()
    assert store.get_session(session.session_id) == session


@on_moto
@each_fault
@pytest.mark.parametrize("operation", ["Query", "TransactWriteItems"])
def test_a_fault_on_revoke_all_revokes_nothing(
    store: DynamoDBSessionStore,
    faults: FaultInjector,
    fault: Fault,
    operation: str,
    clock: ManualClock,
) -> None:
    sessions = []
    for _ in range(3):
        sessions.append(store.create_session(USER))
        clock.advance(1)
    faults.fail(fault, operation)

    with pytest.raises(StoreUnavailable):
        store.revoke_all(USER)

    faults.clear()
    assert store.list_sessions(USER) == sessions
    assert store.revoke_all(USER) == 3


@on_moto
@each_fault
def test_a_fault_on_the_sensitive_path_check_is_unavailable_not_not_found(
    store: DynamoDBSessionStore, faults: FaultInjector, fault: Fault
) -> None:
    session = store.create_session(USER)
    faults.fail(fault, "GetItem")
    with pytest.raises(StoreUnavailable):
        store.get_session(session.session_id)


@pytest.mark.transactions
def test_a_fault_while_enforcing_the_cap_does_not_fail_the_login(
    dynamodb_backend: Backend, faults: FaultInjector, clock: ManualClock
) -> None:
    store = dynamodb_backend.store(settings_with(max_sessions_per_user=1))
    first = store.create_session(USER)
    clock.advance(1)
    faults.fail(service_error("ThrottlingException"), "Query")

    second = store.create_session(USER)  # the cap could not be enforced: still a login

    faults.clear()
    assert store.list_sessions(USER) == [first, second]
    clock.advance(1)
    third = store.create_session(USER)  # the next login converges
    assert store.list_sessions(USER) == [third]


def test_a_rotation_whose_response_was_lost_is_retried_as_a_grace_replay(
    store: DynamoDBSessionStore, clock: ManualClock
) -> None:
    """The write landed, the answer never came back: the retry must get the same successor,
    not be taken for reuse (and botocore's own retries rely on the same path)."""
    session = store.create_session(USER)
    landed_jti = new_jti()
    lost = {"count": 0}

    def lose_the_response(**_: Any) -> None:
        if lost["count"] == 0:
            lost["count"] += 1
            raise ReadTimeoutError(endpoint_url=f"https://dynamodb.{REGION}.amazonaws.com/")

    store.client.meta.events.register("after-call.dynamodb.UpdateItem", lose_the_response)
    try:
        with pytest.raises(StoreUnavailable):
            rotate_first(store, session, landed_jti)
    finally:
        store.client.meta.events.unregister("after-call.dynamodb.UpdateItem", lose_the_response)
    clock.advance(2)

    retried = rotate_first(store, session)

    assert (retried.jti, retried.generation, retried.grace_replay) == (landed_jti, 2, True)


# --- the revocation list (tokencore.revocations) ------------------------------------------------


def _listed(backend: Backend, at: float) -> set[str]:
    item = backend.client.get_item(
        TableName=backend.table_name, Key=bucket_key(bucket_start(at)), ConsistentRead=True
    ).get("Item", {})
    return set(entries_of(item))


@pytest.mark.transactions
def test_a_revocation_lists_its_session_in_the_same_transaction(
    store: DynamoDBSessionStore, dynamodb_backend: Backend, clock: ManualClock
) -> None:
    session = store.create_session(USER)
    other = store.create_session("someone-else")
    # Refused (another user's session, as DELETE /auth/sessions/{id} asks): nothing listed, so
    # nobody can get another user's tokens denied. A list entry written before or after the
    # conditional write, instead of with it, would list ``other`` here.
    with pytest.raises(SessionNotFound):
        store.revoke(other.session_id, user_id=USER)
    assert _listed(dynamodb_backend, clock.now()) == set()

    assert store.revoke(session.session_id) is True
    assert _listed(dynamodb_backend, clock.now()) == {session.session_id}
    assert store.revoke(session.session_id) is False  # already revoked: no second entry
    item = dynamodb_backend.client.get_item(
        TableName=dynamodb_backend.table_name, Key=bucket_key(bucket_start(clock.now()))
    )["Item"]
    window = store.settings.access_token_ttl_seconds + store.settings.clock_skew_leeway_seconds
    assert int(item["expires_at"]["N"]) == bucket_start(clock.now()) + 60 + window


@pytest.mark.transactions
def test_revoke_all_lists_every_session(
    store: DynamoDBSessionStore, dynamodb_backend: Backend, clock: ManualClock
) -> None:
    sessions = {store.create_session(USER).session_id for _ in range(5)}
    assert store.revoke_all(USER) == 5
    assert _listed(dynamodb_backend, clock.now()) == sessions
