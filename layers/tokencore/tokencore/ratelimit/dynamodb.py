"""DynamoDB rate limiter on the single table (tokencore.store.table).

Item: pk ``RATE#<scope>#<key digest>``, sk ``WINDOW#<window start>``, ``count`` (N),
``expires_at`` (TTL: window end plus a margin). Each window has its own item, so a present item
is always the current window's and TTL only collects garbage.

* ``hit``: one UpdateItem. ``ADD`` creates the item at 1 or increments it atomically on the
  server, and ``UPDATED_NEW`` returns the new count in the same round trip, so concurrent
  Lambdas never lose an increment and never read-then-write.
* ``clear`` (tokenctl unlock): a Query of the key's partition for its unexpired windows, then
  a DeleteItem each. Unconditional on purpose: an attempt racing it is counted in the removed
  item or a fresh one, and either way the key starts over.
* ``admit``: the limit is the write's own condition (``count_is_below_limit``), so checking
  and counting are one atomic step. One window: one conditional UpdateItem. Several: one
  TransactWriteItems of conditional increments, all or none, so a full window refuses the
  attempt without spending a slot of the others (an attacker whose address is full cannot
  burn a victim's per-username slots).

A transaction that touches a counter another transaction holds at that instant (many logins
behind one NAT address) is cancelled with ``TransactionConflict``, which botocore does not
retry; nothing was counted, so it is retried here a bounded number of times, then answered as
StoreConflict (503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from tokencore.awsclient import ConditionFailed, LazyClient, call_dynamodb
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

COUNT_ATTRIBUTE: Final = "count"
# One window's counter: absent -> 1 -> ... -> limit (full) -> beyond (``hit`` only).
# hit: no condition, every hit counts (a refused hit must not reopen the window).
increment_and_touch: Final = "ADD #count :one SET #expires_at = :expires_at"
# admit: the attempt takes a slot only while one is free; a full window is never written.
count_is_below_limit: Final = "attribute_not_exists(#count) OR #count < :limit"

# Attempts at an admission transaction cancelled only by TransactionConflict (contention).
_TRANSACTION_ATTEMPTS: Final = 3
_WHAT: Final = "rate limiter"


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

    # --- requests ----------------------------------------------------------------------------

    @staticmethod
    def window_key(window: RateWindow) -> dict[str, Any]:
        return {
            PARTITION_KEY: {"S": f"{RATE_PREFIX}{window.scope}#{window.key_digest}"},
            SORT_KEY: {"S": f"{RATE_SORT_PREFIX}{window.start}"},
        }

    def increment_action(self, window: RateWindow, *, below_limit: bool) -> dict[str, Any]:
        """UpdateItem's parameters (a TransactWriteItems ``Update``) adding one to the window's
        counter; with ``below_limit`` only while the counter is under the window's limit."""
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

    # --- I/O -------------------------------------------------------------------------------

    def _increment(self, window: RateWindow) -> int:
        response = call_dynamodb(
            self._client,
            "update_item",
            {
                **self.increment_action(window, below_limit=False)["Update"],
                "ReturnValues": "UPDATED_NEW",
            },
            what=_WHAT,
        )
        try:
            return int(response["Attributes"][COUNT_ATTRIBUTE]["N"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable("rate limiter: counter missing from the response") from exc

    def _clear(self, scope: str, key_digest: str) -> int:
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk",
            "FilterExpression": "#expires_at > :now",
            "ProjectionExpression": "#pk, #sk",
            "ExpressionAttributeNames": {
                "#pk": PARTITION_KEY,
                "#sk": SORT_KEY,
                "#expires_at": TTL_ATTRIBUTE,
            },
            "ExpressionAttributeValues": {
                ":pk": {"S": f"{RATE_PREFIX}{scope}#{key_digest}"},
                ":now": {"N": str(int(self._clock.now()))},
            },
            "ConsistentRead": True,
        }
        keys: list[dict[str, Any]] = []
        while True:
            response = call_dynamodb(self._client, "query", query, what=_WHAT)
            keys.extend(
                {PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]}
                for item in response.get("Items") or []
            )
            if not response.get("LastEvaluatedKey"):
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        for key in keys:
            call_dynamodb(
                self._client, "delete_item", {"TableName": self._table, "Key": key}, what=_WHAT
            )
        return len(keys)

    def _increment_below(self, windows: Sequence[RateWindow]) -> RateWindow | None:
        actions = [self.increment_action(w, below_limit=True) for w in windows]
        if len(actions) == 1:
            try:
                call_dynamodb(self._client, "update_item", actions[0]["Update"], what=_WHAT)
            except ConditionFailed:
                return windows[0]
            return None
        try:
            self._transact(actions)
        except ConditionFailed as refused:
            window = refused_window(windows, refused.reasons)
            if window is None:
                raise StoreConflict("rate limiter: counters raced other writes") from refused
            return window
        return None

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        attempt = 0
        while True:
            try:
                call_dynamodb(
                    self._client, "transact_write_items", {"TransactItems": actions}, what=_WHAT
                )
            except ConditionFailed as refused:
                attempt += 1
                contention_only = "ConditionalCheckFailed" not in refused.reasons
                if not contention_only or attempt == _TRANSACTION_ATTEMPTS:
                    raise
            else:
                return


def refused_window(windows: Sequence[RateWindow], reasons: Sequence[str]) -> RateWindow | None:
    """The first window whose conditional increment failed its condition (a transaction's
    cancellation reasons are in the order of its actions)."""
    for window, reason in zip(windows, reasons, strict=False):
        if reason == "ConditionalCheckFailed":
            return window
    return None
