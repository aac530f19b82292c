"""The embedded AWS endpoint behind the fault injector, as the functions' boto3 clients meet it
over HTTP: a lost response is a written item and a connection closed without an answer; a
retried transaction is applied once (DynamoDB's ClientRequestToken); an exempt client is never
faulted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from devserver.awsendpoint import EmbeddedAws
from devserver.faults import EXEMPT_APP_ID, FaultInjector, FaultPlan
from tokencore.awsclient import default_boto_config

# moto's state belongs to the process, not to one endpoint: a name no other test uses.
TABLE = f"faults-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def endpoint() -> Iterator[tuple[EmbeddedAws, FaultInjector]]:
    injector = FaultInjector()
    aws = EmbeddedAws("127.0.0.1", 0, wrap=injector.wrap).start()
    try:
        yield aws, injector
    finally:
        aws.stop()


def client(aws: EmbeddedAws, config: Any) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=aws.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture
def clients(endpoint: tuple[EmbeddedAws, FaultInjector]) -> tuple[Any, Any, FaultInjector]:
    """The functions' client (tokencore's own config: three attempts) and an exempt one,
    with a table created through the exempt one."""
    aws, injector = endpoint
    functions = client(aws, default_boto_config())
    exempt = client(aws, Config(user_agent_appid=EXEMPT_APP_ID))
    if TABLE in exempt.list_tables()["TableNames"]:  # left by the previous test
        exempt.delete_table(TableName=TABLE)
    exempt.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return functions, exempt, injector


def count(exempt: Any, key: str) -> int:
    item = exempt.get_item(TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True)
    return int(item.get("Item", {}).get("n", {}).get("N", "0"))


def add_one(key: str) -> dict[str, Any]:
    return {
        "TableName": TABLE,
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "ADD n :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }


def test_a_lost_response_was_applied_and_the_client_cannot_tell(
    clients: tuple[Any, Any, FaultInjector],
) -> None:
    functions, exempt, injector = clients
    injector.configure(FaultPlan(1.0, ("lost",)))
    with pytest.raises(ConnectionClosedError):
        functions.update_item(**add_one("lost"))
    # Every attempt botocore made was applied: this is why a retried write must be idempotent.
    assert count(exempt, "lost") == 3
    assert injector.snapshot()["injected"]["lost"] == {"dynamodb.UpdateItem": 3}


def test_throttling_and_errors_apply_nothing(clients: tuple[Any, Any, FaultInjector]) -> None:
    functions, exempt, injector = clients
    injector.configure(FaultPlan(1.0, ("throttle", "error"), seed=5))
    for _ in range(3):
        with pytest.raises(ClientError) as failed:
            functions.update_item(**add_one("refused"))
        assert failed.value.response["Error"]["Code"] in {
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "InternalServerError",
        }
    assert count(exempt, "refused") == 0


def test_a_transaction_whose_answers_are_lost_is_applied_once(
    clients: tuple[Any, Any, FaultInjector],
) -> None:
    functions, exempt, injector = clients
    injector.configure(FaultPlan(1.0, ("lost",)))
    with pytest.raises(ConnectionClosedError):
        functions.transact_write_items(
            TransactItems=[{"Update": add_one("transaction")}], ClientRequestToken="token-1"
        )
    assert count(exempt, "transaction") == 1  # three attempts, one application
    injector.configure(FaultPlan(0.0))
    functions.transact_write_items(
        TransactItems=[{"Update": add_one("transaction")}], ClientRequestToken="token-1"
    )
    assert count(exempt, "transaction") == 1  # the retry got the first answer
    functions.transact_write_items(
        TransactItems=[{"Update": add_one("transaction")}], ClientRequestToken="token-2"
    )
    assert count(exempt, "transaction") == 2


def test_an_exempt_client_is_never_faulted(clients: tuple[Any, Any, FaultInjector]) -> None:
    _functions, exempt, injector = clients
    injector.configure(FaultPlan(1.0))
    for _ in range(10):
        exempt.update_item(**add_one("exempt"))
    assert count(exempt, "exempt") == 10
    snapshot = injector.snapshot()
    assert snapshot["requests"] == {}
    assert snapshot["exempt"] >= 11


def test_the_endpoint_keeps_no_copy_of_an_item(clients: tuple[Any, Any, FaultInjector]) -> None:
    """moto tracks every model instance it creates; DynamoDB's per-request deep copies (a
    transaction's rollback backup of the whole table, a query's results) must not pile up."""
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    functions, _exempt, _injector = clients
    for number in range(20):
        functions.transact_write_items(
            TransactItems=[{"Update": add_one(f"kept-{number}")}],
            ClientRequestToken=f"kept-{number}",
        )
    functions.scan(TableName=TABLE)
    assert len(Item.instances_tracked) == 0  # type: ignore[attr-defined]
    assert len(Table.instances_tracked) == 0  # type: ignore[attr-defined]
