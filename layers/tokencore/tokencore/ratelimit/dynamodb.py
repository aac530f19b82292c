"""DynamoDB rate limiter: one UpdateItem per hit on the single table (tokencore.store.table).

Item: pk ``RATE#<scope>#<key digest>``, sk ``WINDOW#<window start>``, ``count`` (N),
``expires_at`` (TTL: window end plus a margin). ``ADD`` creates the item at 1 or increments it
atomically on the server, and ``UPDATED_NEW`` returns the new count in the same round trip,
so concurrent Lambdas never lose an increment and never read-then-write.
"""

from __future__ import annotations

from typing import Any

from tokencore.awsclient import LazyClient, call_dynamodb
from tokencore.clock import Clock
from tokencore.errors import StoreUnavailable
from tokencore.ratelimit.base import RateLimiter
from tokencore.store.table import (
    PARTITION_KEY,
    RATE_PREFIX,
    RATE_SORT_PREFIX,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

COUNT_ATTRIBUTE = "count"
# No condition: every hit counts, allowed or not (a refused hit must not reopen the window).
increment_and_touch = "ADD #count :one SET #expires_at = :expires_at"


class DynamoDBRateLimiter(RateLimiter):
    def __init__(
        self,
        table_name: str,
        clock: Clock,
        boto3_client: Any = None,
        boto_config: Any = None,
        *,
        key_secret: bytes | None = None,
    ) -> None:
        super().__init__(clock, key_secret=key_secret)
        self._table = table_name
        self._client = LazyClient("dynamodb", boto3_client, boto_config=boto_config)

    def _increment(
        self, scope: str, key_digest: str, window_start: int, expires_at: int, now: float
    ) -> int:
        response = call_dynamodb(
            self._client,
            "update_item",
            {
                "TableName": self._table,
                "Key": {
                    PARTITION_KEY: {"S": f"{RATE_PREFIX}{scope}#{key_digest}"},
                    SORT_KEY: {"S": f"{RATE_SORT_PREFIX}{window_start}"},
                },
                "UpdateExpression": increment_and_touch,
                "ExpressionAttributeNames": {
                    "#count": COUNT_ATTRIBUTE,
                    "#expires_at": TTL_ATTRIBUTE,
                },
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    ":expires_at": {"N": str(expires_at)},
                },
                "ReturnValues": "UPDATED_NEW",
            },
            what="rate limiter",
        )
        try:
            return int(response["Attributes"][COUNT_ATTRIBUTE]["N"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable("rate limiter: counter missing from the response") from exc
