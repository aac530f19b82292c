"""Helpers for the user-store and rate-limiter contract suites (plain functions and classes,
not fixtures, so they cannot collide with the session suite's conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from argon2 import PasswordHasher
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ClientError,
    EndpointConnectionError,
)
from moto import mock_aws

from tokencore.errors import StoreUnavailable
from tokencore.store.table import create_table

TABLE_NAME = "tokencore-test"


def fast_hasher(time_cost: int = 1) -> PasswordHasher:
    """Argon2id at the library's minimum cost: microseconds instead of tens of milliseconds.
    Only the contract (verify count, rehash, exact bytes) is tested with it; one test in
    tests/unit/test_passwords.py runs the real OWASP parameters."""
    return PasswordHasher(time_cost=time_cost, memory_cost=8, parallelism=1)


class CountingHasher(PasswordHasher):
    """A real hasher that counts verify calls (timing neutrality is tested by work, not time)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verify_calls = 0
        self.hash_calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        self.verify_calls += 1
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hash_calls += 1
        return super().hash(password, salt=salt)


class RecordingRevoker:
    """A SessionRevoker that records every call, can fail on demand, and can run a probe at
    call time (to check what the store already holds when revocation starts)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None
        self.probe: Callable[[str], None] | None = None

    def revoke_user_sessions(self, user_id: str, reason: str) -> int:
        if self.probe is not None:
            self.probe(user_id)
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append((user_id, reason))
        return 3


def failing_revoker_error() -> StoreUnavailable:
    return StoreUnavailable("session store: query failed (ThrottlingException)")


@contextmanager
def moto_dynamodb() -> Iterator[Any]:
    """moto's DynamoDB and one client. Starting moto costs ~0.3 s (it re-registers every
    service and boto3 reloads its models), so suites start it once per module and give each
    test a fresh table (``fresh_table``) instead."""
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@contextmanager
def fresh_table(client: Any) -> Iterator[Any]:
    """The single table, built by store.table.create_table, dropped afterwards."""
    create_table(client, TABLE_NAME)
    try:
        yield client
    finally:
        client.delete_table(TableName=TABLE_NAME)


def scan_items(client: Any) -> list[dict[str, Any]]:
    return list(client.scan(TableName=TABLE_NAME, ConsistentRead=True)["Items"])


def items_as_text(client: Any) -> str:
    return json.dumps(scan_items(client), ensure_ascii=False, sort_keys=True)


def throttling(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {
                "Code": "ProvisionedThroughputExceededException",
                "Message": "Rate of requests exceeds the allowed throughput.",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation,
    )


def connection_error(operation: str) -> EndpointConnectionError:
    del operation
    return EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def transaction_canceled(reasons: list[str]) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": code} for code in reasons],
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "TransactWriteItems",
    )


FAULTS: dict[str, Callable[[str], Exception]] = {
    "throttling": throttling,
    "connection": connection_error,
}


class FaultInjector:
    """Raise ``error`` from botocore's ``before-call`` event of one DynamoDB operation, before
    any request leaves (and before botocore's retries, so each injected fault is final)."""

    def __init__(self, client: Any, operation: str, error: Exception) -> None:
        self.client = client
        self.event = f"before-call.dynamodb.{operation}"
        self.error = error
        self.calls = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1
        raise self.error

    def __enter__(self) -> FaultInjector:
        self.client.meta.events.register(self.event, self, unique_id=f"fault-{id(self)}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"fault-{id(self)}")


class FailFirst:
    """Raise a fresh ``error()`` from the first ``times`` calls of one DynamoDB operation
    (botocore's before-call event, before any request leaves), then let the real calls
    through."""

    def __init__(
        self, client: Any, operation: str, error: Callable[[], Exception], times: int
    ) -> None:
        self.client = client
        self.event = f"before-call.dynamodb.{operation}"
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error()

    def __enter__(self) -> FailFirst:
        self.client.meta.events.register(self.event, self, unique_id=f"first-{id(self)}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"first-{id(self)}")


class ParamRecorder:
    """Records the parameters of each call of one operation (``provide-client-params``)."""

    def __init__(self, client: Any, operation: str) -> None:
        self.client = client
        self.event = f"provide-client-params.dynamodb.{operation}"
        self.params: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.params.append(dict(params))

    def __enter__(self) -> ParamRecorder:
        self.client.meta.events.register(self.event, self, unique_id=f"record-{id(self)}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"record-{id(self)}")
