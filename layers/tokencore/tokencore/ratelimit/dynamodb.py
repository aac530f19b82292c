"""DynamoDB rate limiter on the single table (tokencore.store.table).

Item: pk ``RATE#<scope>#<key digest>``, sk ``WINDOW#<window start>``, ``count`` (N),
``expires_at`` (TTL: window end plus a margin). Each window has its own item, so a present item
is always the current window's and TTL only collects garbage.

* ``hit``: one UpdateItem. ``ADD`` creates the item at 1 or increments it atomically on the
  server, and ``UPDATED_NEW`` returns the new count in the same round trip, so concurrent
  Lambdas never lose an increment and never read-then-write.
* ``full_window``: one consistent BatchGetItem of the windows' counters.
* ``admit``: one TransactWriteItems, each counter incremented on the condition
  ``count_is_below_limit``, all or none. ``count``: the same without the condition.

The request pieces (keys, the transaction's Update actions, reading a count) are public so the
login store can put them in the same round trips as the user and the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokencore.awsclient import ConditionFailed, LazyClient, batch_get_items, call_dynamodb
from tokencore.clock import Clock
from tokencore.errors import StoreConflict, StoreUnavailable
from tokencore.ratelimit.base import RateLimiter, RateWindow
from tokencore.store.table import (
    PARTITION_KEY,
    RATE_PREFIX,
    RATE_SORT_PREFIX,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

COUNT_ATTRIBUTE = "count"
# hit/count: no condition, every hit counts (a refused hit must not reopen the window).
increment_and_touch = "ADD #count :one SET #expires_at = :expires_at"
# admit: the attempt takes a slot only while one is free.
count_is_below_limit = "attribute_not_exists(#count) OR #count < :limit"


class DynamoDBRateLimiter(RateLimiter):
    def __init__(
        self,
        table_name: str,
        clock: Clock,
        boto3_client: Any = None,
        boto_config: Any = None,
        *,
        boto3_session: Any = None,
        key_secret: bytes | None = None,
    ) -> None:
        super().__init__(clock, key_secret=key_secret)
        self._table = table_name
        self._client = LazyClient("dynamodb", boto3_client, boto3_session, boto_config)

    @property
    def table_name(self) -> str:
        return self._table

    # --- request pieces (shared with the login store) -------------------------------------

    @staticmethod
    def window_key(window: RateWindow) -> dict[str, Any]:
        return {
            PARTITION_KEY: {"S": f"{RATE_PREFIX}{window.scope}#{window.key_digest}"},
            SORT_KEY: {"S": f"{RATE_SORT_PREFIX}{window.start}"},
        }

    def increment_action(self, window: RateWindow, *, below_limit: bool) -> dict[str, Any]:
        """One TransactWriteItems ``Update`` adding one to the window's counter; with
        ``below_limit`` only while the counter is under the window's limit."""
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self.window_key(window),
            "UpdateExpression": increment_and_touch,
            "ExpressionAttributeNames": {"#count": COUNT_ATTRIBUTE, "#expires_at": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":expires_at": {"N": str(window.expires_at)},
            },
        }
        if below_limit:
            update["ConditionExpression"] = count_is_below_limit
            update["ExpressionAttributeValues"][":limit"] = {"N": str(window.limit.count)}
        return {"Update": update}

    @staticmethod
    def count_in(item: dict[str, Any] | None) -> int:
        """The count a counter item holds (0 when the window has no item yet)."""
        if item is None:
            return 0
        try:
            return int(item[COUNT_ATTRIBUTE]["N"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable("rate limiter: counter item is malformed") from exc

    # --- I/O -------------------------------------------------------------------------------

    def _increment(self, window: RateWindow) -> int:
        response = call_dynamodb(
            self._client,
            "update_item",
            {
                **self.increment_action(window, below_limit=False)["Update"],
                "ReturnValues": "UPDATED_NEW",
            },
            what="rate limiter",
        )
        try:
            return int(response["Attributes"][COUNT_ATTRIBUTE]["N"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable("rate limiter: counter missing from the response") from exc

    def _counts(self, windows: Sequence[RateWindow]) -> list[int]:
        keys = [self.window_key(w) for w in windows]
        found = batch_get_items(self._client, self._table, keys, what="rate limiter")
        return [self.count_in(item) for item in found]

    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        actions = [self.increment_action(w, below_limit=True) for w in windows]
        try:
            self._transact(actions)
        except ConditionFailed as refused:
            window = refused_window(windows, refused.reasons)
            if window is None:
                raise StoreConflict("rate limiter: counters raced another write") from refused
            return window
        return None

    def _increment_all(self, windows: Sequence[RateWindow]) -> None:
        try:
            self._transact([self.increment_action(w, below_limit=False) for w in windows])
        except ConditionFailed as refused:  # no conditions: only a TransactionConflict
            raise StoreConflict("rate limiter: counters raced another write") from refused

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        call_dynamodb(
            self._client, "transact_write_items", {"TransactItems": actions}, what="rate limiter"
        )


def refused_window(windows: Sequence[RateWindow], reasons: Sequence[str]) -> RateWindow | None:
    """The first window whose conditional increment failed its condition (the transaction's
    cancellation reasons are in the order of its actions, the windows first)."""
    for window, reason in zip(windows, reasons, strict=False):
        if reason == "ConditionalCheckFailed":
            return window
    return None
