"""awsclient: client construction (no hard-coded endpoint, bounded waiting, lazy) and the
DynamoDB call wrapper's error translation."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError

from tests.clock import ManualClock
from tokencore.awsclient import (
    ConditionFailed,
    LazyClient,
    batch_get_items,
    call_dynamodb,
    default_boto_config,
    error_code,
)
from tokencore.config import Settings
from tokencore.errors import StoreUnavailable
from tokencore.ratelimit import DynamoDBRateLimiter
from tokencore.sessions import DynamoDBSessionStore
from tokencore.users import DynamoDBUserStore

# --- Clients -----------------------------------------------------------------------------------


def test_aws_endpoint_url_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert LazyClient("dynamodb").get().meta.endpoint_url == "http://127.0.0.1:4566"
    store = DynamoDBUserStore("t", ManualClock())
    limiter = DynamoDBRateLimiter("t", ManualClock())
    sessions = DynamoDBSessionStore("t", Settings())
    assert store._client.get().meta.endpoint_url == "http://127.0.0.1:4566"
    assert limiter._client.get().meta.endpoint_url == "http://127.0.0.1:4566"
    assert sessions.client.meta.endpoint_url == "http://127.0.0.1:4566"


def test_default_endpoint_is_regional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    assert (
        LazyClient("dynamodb").get().meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"
    )


def test_default_config_bounds_waiting() -> None:
    config = LazyClient("dynamodb").get().meta.config
    assert config.connect_timeout == 1
    assert config.read_timeout == 2
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert default_boto_config().retries == config.retries


def test_a_callers_config_is_merged_over_the_defaults() -> None:
    config = LazyClient("kms", boto_config=Config(read_timeout=5)).get().meta.config
    assert config.read_timeout == 5  # the caller's option wins
    assert config.connect_timeout == 1  # the defaults it does not set stay
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_the_client_is_created_once_on_first_use_from_the_given_session() -> None:
    session = boto3.session.Session(region_name="eu-west-1")
    created: list[str] = []
    session.events.register("creating-client-class.ssm", lambda **_: created.append("ssm"))
    lazy = LazyClient("ssm", boto3_session=session)
    assert created == []
    client = lazy.get()
    assert lazy.get() is client
    assert created == ["ssm"]
    assert client.meta.region_name == "eu-west-1"


def test_an_injected_client_is_used_as_is() -> None:
    injected = object()
    assert LazyClient("dynamodb", boto3_client=injected).get() is injected


# --- Error codes -------------------------------------------------------------------------------


def client_error(code: str, **extra: Any) -> ClientError:
    response = {"Error": {"Code": code, "Message": "arn:aws:dynamodb:... user alice"}, **extra}
    return ClientError(response, "UpdateItem")


def test_error_code_is_the_aws_code_or_the_class_name() -> None:
    assert error_code(client_error("ThrottlingException")) == "ThrottlingException"
    assert error_code(client_error("has spaces: arn:aws:x")) == "ClientError"
    assert error_code(client_error("x" * 65)) == "ClientError"
    assert error_code(EndpointConnectionError(endpoint_url="https://x")) == (
        "EndpointConnectionError"
    )
    assert error_code(ValueError("boom")) == "ValueError"


# --- call_dynamodb -----------------------------------------------------------------------------


class FakeClient:
    """Answers ``update_item`` with ``result``, or raises it."""

    def __init__(self, result: dict[str, Any] | Exception) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def call(result: dict[str, Any] | Exception) -> dict[str, Any]:
    client = LazyClient("dynamodb", boto3_client=FakeClient(result))
    return call_dynamodb(client, "update_item", {"TableName": "t"}, what="test store")


def test_a_successful_call_returns_the_response() -> None:
    fake = FakeClient({"Attributes": {"n": {"N": "1"}}})
    response = call_dynamodb(
        LazyClient("dynamodb", boto3_client=fake), "update_item", {"Key": 1}, what="w"
    )
    assert response == {"Attributes": {"n": {"N": "1"}}}
    assert fake.calls == [{"Key": 1}]


def test_a_refused_condition_carries_the_old_item() -> None:
    item = {"pk": {"S": "SESSION#1"}}
    with pytest.raises(ConditionFailed) as caught:
        call(client_error("ConditionalCheckFailedException", Item=item))
    assert (caught.value.reasons, caught.value.item) == ([], item)
    with pytest.raises(ConditionFailed) as caught:
        call(client_error("ConditionalCheckFailedException"))
    assert caught.value.item is None


def test_a_refused_transaction_carries_the_reasons() -> None:
    reasons = [{"Code": "ConditionalCheckFailed"}, {"Code": "None"}]
    with pytest.raises(ConditionFailed) as caught:
        call(client_error("TransactionCanceledException", CancellationReasons=reasons))
    assert (caught.value.reasons, caught.value.item) == (["ConditionalCheckFailed", "None"], None)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            client_error("ProvisionedThroughputExceededException"),
            "ProvisionedThroughputExceededException",
        ),
        (
            client_error(
                "TransactionCanceledException", CancellationReasons=[{"Code": "ThrottlingError"}]
            ),
            "TransactionCanceledException",
        ),
        (client_error("AccessDeniedException"), "AccessDeniedException"),
        (EndpointConnectionError(endpoint_url="https://x"), "EndpointConnectionError"),
    ],
)
def test_every_other_failure_is_store_unavailable_with_only_the_code(
    error: Exception, code: str
) -> None:
    with pytest.raises(StoreUnavailable, match=code) as caught:
        call(error)
    assert caught.value.message.startswith("test store: update_item failed (")
    assert "alice" not in caught.value.message
    assert "arn:aws" not in caught.value.message
    assert caught.value.__cause__ is error


def test_a_client_that_cannot_be_built_is_store_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(StoreUnavailable, match="NoRegionError") as caught:
        call_dynamodb(LazyClient("dynamodb"), "get_item", {}, what="test store")
    assert isinstance(caught.value.__cause__, NoRegionError)


# --- batch_get_items ----------------------------------------------------------------------------


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


def test_batch_get_items_projects_the_attributes_asked_for() -> None:
    fake = ScriptedDynamoDB(_responses("a"))

    batch_get_items(
        LazyClient("dynamodb", fake), "t", [_key("a")], what="test", attributes=("pk", "status")
    )

    request = fake.requests[0]["RequestItems"]["t"]
    assert request["ProjectionExpression"] == "#a0, #a1"
    assert request["ExpressionAttributeNames"] == {"#a0": "pk", "#a1": "status"}
