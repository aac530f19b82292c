"""The login store on the single table: one BatchGetItem, then one TransactWriteItems.

* ``look_up``: a strongly consistent BatchGetItem of the username claim (which carries a copy
  of the profile, tokencore.users.dynamodb) and the windows' counters.
* ``record_success``: TransactWriteItems of each counter's conditional increment
  (``count_is_below_limit``) and the session's Put (``session_is_new``). Its idempotency token
  is derived from the session id, so botocore's own retry of a request whose response was lost
  cannot count the attempt twice.
* ``record_failure``: TransactWriteItems of the unconditional increments.

A transaction that touches a counter another transaction holds at that instant (many logins
behind one NAT address) is cancelled with ``TransactionConflict``, which botocore does not
retry; it is retried here a bounded number of times, then answered as StoreConflict (503 with
Retry-After). Cost: a transactional write is two write units per item, so a successful login
writes 6 units instead of the 3 that three single-item writes would (about $0.0000075 per login
at on-demand prices, docs/capacity.md), in exchange for half the round trips and the atomicity.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from tokencore.awsclient import ConditionFailed, batch_get_items, call_dynamodb
from tokencore.errors import StoreConflict
from tokencore.logins.base import LoginStore
from tokencore.ratelimit.base import RateWindow, first_full
from tokencore.ratelimit.dynamodb import DynamoDBRateLimiter, refused_window
from tokencore.sessions.base import Session
from tokencore.sessions.dynamodb import DynamoDBSessionStore
from tokencore.users.base import User
from tokencore.users.dynamodb import DynamoDBUserStore, claim_key

# Attempts at a transaction cancelled only by TransactionConflict (contention, not state).
_TRANSACTION_ATTEMPTS = 3
_WHAT = "login store"


class DynamoDBLoginStore(LoginStore):
    """Uses the three DynamoDB stores' own request pieces and their shared client and table."""

    def __init__(
        self,
        users: DynamoDBUserStore,
        rate_limiter: DynamoDBRateLimiter,
        sessions: DynamoDBSessionStore,
    ) -> None:
        self._users = users
        self._rate_limiter = rate_limiter
        self._sessions = sessions
        self._table = sessions.table_name
        self._client = sessions.lazy_client

    def _read(
        self, normalized_username: str | None, windows: Sequence[RateWindow]
    ) -> tuple[User | None, RateWindow | None]:
        keys = [self._rate_limiter.window_key(w) for w in windows]
        if normalized_username is not None:
            keys.append(claim_key(normalized_username))
        if not keys:
            return None, None
        items = batch_get_items(self._client, self._table, keys, what=_WHAT)
        counts = [self._rate_limiter.count_in(item) for item in items[: len(windows)]]
        user = self._users.user_from_claim(items[-1]) if normalized_username is not None else None
        return user, first_full(windows, counts)

    def record_success(self, windows: Sequence[RateWindow], session: Session) -> None:
        actions = [self._rate_limiter.increment_action(w, below_limit=True) for w in windows]
        actions.append(self._sessions.put_action(session))
        try:
            self._transact(actions, idempotency=session.session_id)
        except ConditionFailed as refused:
            window = refused_window(windows, refused.reasons)
            if window is not None:
                raise window.refusal() from refused
            if "ConditionalCheckFailed" in refused.reasons:
                raise StoreConflict("session id collision") from refused
            raise StoreConflict("login raced other logins; retry") from refused

    def record_failure(self, windows: Sequence[RateWindow]) -> None:
        if not windows:
            return
        actions = [self._rate_limiter.increment_action(w, below_limit=False) for w in windows]
        try:
            self._transact(actions, idempotency=secrets.token_urlsafe(16))
        except ConditionFailed as refused:  # no conditions: contention only
            raise StoreConflict("login raced other logins; retry") from refused

    def _transact(self, actions: list[dict[str, Any]], *, idempotency: str) -> None:
        attempt = 0
        while True:
            try:
                call_dynamodb(
                    self._client,
                    "transact_write_items",
                    {
                        "TransactItems": actions,
                        # A fresh token per attempt: a cancelled transaction must run again.
                        "ClientRequestToken": f"{idempotency}.{attempt}",
                    },
                    what=_WHAT,
                )
            except ConditionFailed as refused:
                attempt += 1
                contention_only = "ConditionalCheckFailed" not in refused.reasons
                if not contention_only or attempt == _TRANSACTION_ATTEMPTS:
                    raise
            else:
                return
