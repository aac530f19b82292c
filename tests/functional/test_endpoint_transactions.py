"""TransactWriteItems on the embedded AWS endpoint (devserver.awsendpoint): all or nothing, at a
cost that follows the items a transaction touches, not the table's size.

moto deep-copies every table a transaction names as its rollback backup; the endpoint patches
that (``_cheap_transactions``, written against moto ``PATCHED_MOTO_VERSION``). These tests fail
if moto's code moves from under the patch: the copies are counted (never timed), and a
transaction whose second condition fails must leave its first item as it was."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import moto
import pytest
from botocore.exceptions import ClientError

from devserver.awsendpoint import PATCHED_MOTO_VERSION, EmbeddedAws

LARGE_TABLE_ITEMS = 300


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    aws = EmbeddedAws("127.0.0.1", 0).start()
    try:
        yield boto3.client(
            "dynamodb",
            endpoint_url=aws.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        aws.stop()


def new_table(dynamodb: Any, items: int, *, range_key: bool = False) -> str:
    """A table (moto's state is the process's: a name no other test uses) with ``items``."""
    name = f"tx-{uuid.uuid4().hex[:8]}"
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    dynamodb.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, items, 25):
        dynamodb.batch_write_item(
            RequestItems={
                name: [
                    {"PutRequest": {"Item": key(f"filler-{n}", range_key) | {"n": {"N": "0"}}}}
                    for n in range(start, min(start + 25, items))
                ]
            }
        )
    return name


def key(pk: str, range_key: bool = False) -> dict[str, Any]:
    return {"pk": {"S": pk}} | ({"sk": {"S": "s"}} if range_key else {})


def bump(table: str, pk: str, range_key: bool = False) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": key(pk, range_key),
            "UpdateExpression": "SET n = n + :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def create_if_absent(table: str, pk: str, range_key: bool = False) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": key(pk, range_key) | {"n": {"N": "100"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def get(dynamodb: Any, table: str, pk: str, range_key: bool = False) -> dict[str, Any] | None:
    found: dict[str, Any] | None = dynamodb.get_item(
        TableName=table, Key=key(pk, range_key), ConsistentRead=True
    ).get("Item")
    return found


def test_the_patch_targets_the_pinned_moto() -> None:
    assert moto.__version__ == PATCHED_MOTO_VERSION, (
        "moto changed: check devserver/awsendpoint.py's _cheap_transactions against "
        "moto.dynamodb.models.DynamoDBBackend.transact_write_items, then update "
        "PATCHED_MOTO_VERSION"
    )


@pytest.mark.parametrize("range_key", [False, True], ids=["hash", "hash-and-range"])
def test_a_failed_second_condition_leaves_the_first_item_unchanged(
    dynamodb: Any, range_key: bool
) -> None:
    table = new_table(dynamodb, 3, range_key=range_key)
    dynamodb.put_item(TableName=table, Item=key("taken", range_key) | {"n": {"N": "7"}})
    before = {pk: get(dynamodb, table, pk, range_key) for pk in ("filler-0", "taken", "fresh")}

    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                bump(table, "filler-0", range_key),  # applied by moto first, then rolled back
                create_if_absent(table, "fresh", range_key),  # applied, then rolled back
                create_if_absent(table, "taken", range_key),  # fails: the item exists
            ]
        )

    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in refused.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    after = {pk: get(dynamodb, table, pk, range_key) for pk in ("filler-0", "taken", "fresh")}
    assert after == before
    assert before["fresh"] is None
    assert dynamodb.scan(TableName=table, Select="COUNT")["Count"] == 4


def test_a_transaction_that_passes_applies_every_write(dynamodb: Any) -> None:
    table = new_table(dynamodb, 2)
    dynamodb.transact_write_items(
        TransactItems=[bump(table, "filler-0"), create_if_absent(table, "fresh")]
    )
    assert get(dynamodb, table, "filler-0") == key("filler-0") | {"n": {"N": "1"}}
    assert get(dynamodb, table, "fresh") == key("fresh") | {"n": {"N": "100"}}


def test_a_refused_transaction_leaves_everything_as_it_was(dynamodb: Any) -> None:
    """One item named twice: moto refuses the whole request (ValidationException) after
    applying the first write."""
    table = new_table(dynamodb, 2)
    before = get(dynamodb, table, "filler-1")
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(
            TransactItems=[bump(table, "filler-1"), bump(table, "filler-1")]
        )
    assert get(dynamodb, table, "filler-1") == before


def copies_made_by_one_transaction(
    dynamodb: Any, items: int, monkeypatch: pytest.MonkeyPatch
) -> int:
    """How many moto ``Item`` objects one transaction deep-copies (``Item.__deepcopy__`` is
    moto's own, run for every item however deep the copy that reaches it)."""
    from moto.dynamodb.models.dynamo_type import Item

    table = new_table(dynamodb, items)
    copied: list[Item] = []
    item_deepcopy = Item.__deepcopy__

    def counted(self: Item, memo: dict[int, Any]) -> Item:
        copied.append(self)
        return item_deepcopy(self, memo)

    with monkeypatch.context() as patched:
        patched.setattr(Item, "__deepcopy__", counted)
        dynamodb.transact_write_items(
            TransactItems=[bump(table, "filler-0"), create_if_absent(table, "fresh")]
        )
    return len(copied)


def test_a_transaction_copies_the_items_it_touches_not_the_table(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = copies_made_by_one_transaction(dynamodb, 2, monkeypatch)
    large = copies_made_by_one_transaction(dynamodb, LARGE_TABLE_ITEMS, monkeypatch)
    # The existing item named by the update: once as the backup, once by moto's update_item.
    assert 1 <= small <= 2
    assert large == small  # moto alone: one more copy per item in the table
