"""The DynamoDB session store: the single table of store/table.py, low-level client, no reads
before writes.

boto3 is imported on first use (tokencore.awsclient), never at import time or construction, so
a module that merely references this class (the authorizer) pays nothing on its fast path. The
low-level client (not the resource) keeps cold starts short; boto3 itself honours
``AWS_ENDPOINT_URL``.

Every conditional write asks for ``ReturnValuesOnConditionCheckFailure=ALL_OLD``, so a refused
write is classified from the state it was refused on, with no second request. When the answer
carries no item (on DynamoDB: the item does not exist; on emulators such as dynalite that ignore
the parameter: always), one strongly consistent GetItem follows. That read is safe because the
refused write changed nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, cast

from tokencore import revocations
from tokencore.awsclient import ConditionFailed, LazyClient, call_dynamodb
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings
from tokencore.errors import StoreUnavailable
from tokencore.sessions.base import (
    STATUS_ACTIVE,
    STATUS_REVOKED,
    Revocation,
    Rotation,
    Session,
    SessionStanding,
    SessionStatus,
    SessionStore,
    WriteOutcome,
    index_sort_key,
)
from tokencore.store.table import (
    PARTITION_KEY,
    SESSION_PREFIX,
    SESSION_SORT,
    SORT_KEY,
    TTL_ATTRIBUTE,
    USER_INDEX_NAME,
    USER_INDEX_PARTITION_KEY,
    USER_INDEX_SORT_KEY,
    USER_PREFIX,
)

# --- Conditions --------------------------------------------------------------------------------
#
# One session's refresh tokens over time (j = jti, g = generation, t = rotation time):
#
#   login              current = (j1, g1)   previous = -
#   rotate j1 at t1    current = (j2, g2)   previous = (j1, g1, t1)   j1 replays in [t1, t1 + grace)
#   rotate j2 at t2    current = (j3, g3)   previous = (j2, g2, t2)   j1 is stale lineage now
#   revoke             status = revoked     terminal: no write ever sets status back to active
#
# A rotation moves one line down, and only when the presented token is the current one of an
# active session that has passed neither deadline. Replays of the previous token are decided
# from the refused state (base.py) and write nothing, so the grace window never slides.
presented_is_current: Final = (
    "#current_jti = :presented_jti AND #generation = :presented_generation"
)
session_is_active: Final = "#status = :active"
not_idle_expired: Final = "#idle_expires_at > :now"
not_absolute_expired: Final = "#absolute_expires_at > :now"
ROTATION_CONDITION: Final = " AND ".join(
    f"({part})"
    for part in (presented_is_current, session_is_active, not_idle_expired, not_absolute_expired)
)
ROTATION_UPDATE: Final = (
    "SET #current_jti = :new_jti, #generation = :new_generation,"
    " #previous_jti = :presented_jti, #previous_generation = :presented_generation,"
    " #previous_rotated_at = :now, #last_activity = :now,"
    " #idle_expires_at = :idle_expires_at, #expires_at = :idle_expires_at"
)

# Revocation: only an active session, so it never resurrects or overwrites a first reason. It
# also takes the session out of the by_user index (a sparse index), so listing, revoke-all and
# the session cap read live sessions only, however many a user has logged out or had evicted.
belongs_to_user: Final = "#user_id = :user_id"
REVOCATION_UPDATE: Final = (
    "SET #status = :revoked, #revoked_reason = :reason, #revoked_at = :now REMOVE #gsi1pk, #gsi1sk"
)


session_is_new: Final = "attribute_not_exists(#pk)"
session_of_user: Final = "#gsi1pk = :gsi1pk AND begins_with(#gsi1sk, :session_prefix)"

_NAME_TOKEN: Final = re.compile(r"#(\w+)")
_ATTRIBUTE_NAMES: Final = {
    "pk": PARTITION_KEY,
    "gsi1pk": USER_INDEX_PARTITION_KEY,
    "gsi1sk": USER_INDEX_SORT_KEY,
    "expires_at": TTL_ATTRIBUTE,
}


def _names(*expressions: str) -> dict[str, str]:
    """ExpressionAttributeNames for exactly the ``#name`` tokens used (DynamoDB refuses
    unused ones)."""
    return {
        f"#{token}": _ATTRIBUTE_NAMES.get(token, token)
        for expression in expressions
        for token in _NAME_TOKEN.findall(expression)
    }


class DynamoDBSessionStore(SessionStore):
    """Sessions on the single table. The client is the caller's (``boto3_client``), or is built
    on first use from ``boto3_session`` (default: a session of its own) with
    ``awsclient.default_boto_config()`` merged with ``boto_config``. botocore's retries are
    safe here: if a lost rotation attempt landed, the retry's refusal shows the successor this
    very call generated, which the store takes as its own success (sessions.base)."""

    def __init__(
        self,
        table_name: str,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        boto3_client: Any | None = None,
        boto_config: Any | None = None,
        *,
        boto3_session: Any | None = None,
        page_size: int = 100,
    ) -> None:
        super().__init__(settings, clock)
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.table_name = table_name
        self.page_size = page_size
        self._client = LazyClient("dynamodb", boto3_client, boto3_session, boto_config)

    @property
    def lazy_client(self) -> LazyClient:
        """The client, not yet created (shared with the login store)."""
        return self._client

    @property
    def client(self) -> Any:
        """The low-level DynamoDB client, created (and boto3 imported) on first use."""
        return self._client.get()

    # --- Requests ------------------------------------------------------------------------------

    def _request(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One API call (awsclient.call_dynamodb): a refused condition raises ConditionFailed
        with the item it was refused on; anything else is StoreUnavailable."""
        return call_dynamodb(self._client, operation, params, what="session store")

    def _key(self, session_id: str) -> dict[str, Any]:
        return {PARTITION_KEY: _s(SESSION_PREFIX + session_id), SORT_KEY: _s(SESSION_SORT)}

    def item_key(self, session_id: str) -> dict[str, Any]:
        """The key of a session's item (for reads batched with other stores' items)."""
        return self._key(session_id)

    @staticmethod
    def standing_from_item(item: Mapping[str, Any]) -> SessionStanding:
        """Parse the STANDING_ATTRIBUTES of a session item read elsewhere (StoreUnavailable
        when malformed)."""
        return _standing_from_item(item)

    def _refused_state(self, session_id: str, item: dict[str, Any] | None) -> Session | None:
        return _from_item(item) if item else self._read(session_id)

    def _conditional_update(
        self,
        session_id: str,
        *,
        update: str,
        condition: str,
        values: dict[str, Any],
        return_new: bool,
    ) -> WriteOutcome:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._key(session_id),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": _names(update, condition),
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            response = self._request("update_item", params)
        except ConditionFailed as refused:
            return WriteOutcome(False, self._refused_state(session_id, refused.item))
        new = _from_item(response.get("Attributes") or {}) if return_new else None
        return WriteOutcome(True, new)

    # --- Backend I/O ---------------------------------------------------------------------------

    def put_action(self, session: Session) -> dict[str, Any]:
        """The TransactWriteItems ``Put`` of a new session (the login store writes it in the
        same transaction as the login's rate-limit counters)."""
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": _to_item(session),
                "ConditionExpression": session_is_new,
                "ExpressionAttributeNames": _names(session_is_new),
            }
        }

    def _insert(self, session: Session) -> WriteOutcome:
        params = {
            **self.put_action(session)["Put"],
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            self._request("put_item", params)
        except ConditionFailed as refused:
            return WriteOutcome(False, self._refused_state(session.session_id, refused.item))
        return WriteOutcome(True, session)

    def _read(self, session_id: str) -> Session | None:
        response = self._request(
            "get_item",
            {"TableName": self.table_name, "Key": self._key(session_id), "ConsistentRead": True},
        )
        item = response.get("Item")
        return _from_item(item) if item else None

    def _write_rotation(self, rotation: Rotation) -> WriteOutcome:
        return self._conditional_update(
            rotation.session_id,
            update=ROTATION_UPDATE,
            condition=ROTATION_CONDITION,
            values={
                ":presented_jti": _s(rotation.presented_jti),
                ":presented_generation": _n(rotation.presented_generation),
                ":active": _s(STATUS_ACTIVE),
                ":now": _n(rotation.now),
                ":new_jti": _s(rotation.new_jti),
                ":new_generation": _n(rotation.new_generation),
                ":idle_expires_at": _n(rotation.idle_expires_at),
            },
            return_new=True,
        )

    def revocation_actions(self, revocation: Revocation) -> tuple[dict[str, Any], dict[str, Any]]:
        """The two TransactWriteItems actions of a revocation: the session's conditional
        update (active: revoked, out of the by-user index) and its revocation-list entry."""
        condition = session_is_active
        values = {
            ":active": _s(STATUS_ACTIVE),
            ":revoked": _s(STATUS_REVOKED),
            ":reason": _s(revocation.reason),
            ":now": _n(revocation.now),
        }
        if revocation.user_id is not None:
            condition = f"({session_is_active}) AND ({belongs_to_user})"
            values[":user_id"] = _s(revocation.user_id)
        update = {
            "Update": {
                "TableName": self.table_name,
                "Key": self._key(revocation.session_id),
                "UpdateExpression": REVOCATION_UPDATE,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": _names(REVOCATION_UPDATE, condition),
                "ExpressionAttributeValues": values,
            }
        }
        window = revocations.window_seconds(
            self.settings.access_token_ttl_seconds, self.settings.clock_skew_leeway_seconds
        )
        listing = revocations.entry_update(
            self.table_name, revocation.session_id, revocation.now, window
        )
        return update, listing

    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        """The session's conditional update and its revocation-list entry, in one transaction:
        a session is listed exactly when this write revokes it (never another user's session,
        never one that was not active). Concurrent revocations meet on the list's bucket item;
        a TransactionConflict there is retried, a refused condition is the session's state."""
        update, listing = self.revocation_actions(revocation)
        for attempt in range(revocations.CONFLICT_ATTEMPTS):
            try:
                self._request("transact_write_items", {"TransactItems": [update, listing]})
            except ConditionFailed as refused:
                if "ConditionalCheckFailed" in refused.reasons[:1]:
                    return WriteOutcome(False, self._read(revocation.session_id))
                # A conflict: another revocation of this session (then that one revoked and
                # listed it: refused here), or of another session on the same bucket item.
                found = self._read(revocation.session_id)
                if found is None or found.status != STATUS_ACTIVE:
                    return WriteOutcome(False, found)
                if attempt + 1 == revocations.CONFLICT_ATTEMPTS:
                    raise StoreUnavailable(
                        "session store: revocation kept conflicting"
                    ) from refused
                revocations.pause_after_conflict(attempt)
                continue
            return WriteOutcome(True, None)
        raise StoreUnavailable("session store: revocation was not written")  # unreachable

    def _iter_user_sessions(self, user_id: str) -> Iterator[Session]:
        # Revocation removes a session from the index, so this reads live sessions only. The
        # index is eventually consistent (a GSI has no ConsistentRead): a session revoked a
        # moment ago may still appear, so the base class checks status and expiry again.
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": USER_INDEX_NAME,
            "KeyConditionExpression": session_of_user,
            "ExpressionAttributeNames": _names(session_of_user),
            "ExpressionAttributeValues": {
                ":gsi1pk": _s(USER_PREFIX + user_id),
                ":session_prefix": _s(SESSION_PREFIX),
            },
            "Limit": self.page_size,
        }
        while True:
            response = self._request("query", params)
            for item in response.get("Items", []):
                yield _from_item(item)
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            params["ExclusiveStartKey"] = last_key


# --- Items -------------------------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    # repr round-trips a float exactly; ints stay ints.
    return {"N": str(value) if isinstance(value, int) else repr(float(value))}


def _to_item(session: Session) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: _s(SESSION_PREFIX + session.session_id),
        SORT_KEY: _s(SESSION_SORT),
        USER_INDEX_PARTITION_KEY: _s(USER_PREFIX + session.user_id),
        USER_INDEX_SORT_KEY: _s(index_sort_key(session)),
        "session_id": _s(session.session_id),
        "user_id": _s(session.user_id),
        "created_at": _n(session.created_at),
        "last_activity": _n(session.last_activity),
        "idle_expires_at": _n(session.idle_expires_at),
        "absolute_expires_at": _n(session.absolute_expires_at),
        # Kept until the idle deadline: until then a replayed token must still find the item
        # and be told "revoked"; after it, every token of the session is expired anyway.
        TTL_ATTRIBUTE: _n(session.idle_expires_at),
        "current_jti": _s(session.current_jti),
        "generation": _n(session.generation),
        "status": _s(session.status),
        "security_level": _n(session.security_level),
    }
    optional: dict[str, dict[str, str] | None] = {
        "device_id": _s(session.device_id) if session.device_id else None,
        "source_ip": _s(session.source_ip) if session.source_ip else None,
        "user_agent": _s(session.user_agent) if session.user_agent else None,
        "previous_jti": _s(session.previous_jti) if session.previous_jti else None,
        "previous_generation": _opt_n(session.previous_generation),
        "previous_rotated_at": _opt_n(session.previous_rotated_at),
        "revoked_reason": _s(session.revoked_reason) if session.revoked_reason else None,
        "revoked_at": _opt_n(session.revoked_at),
    }
    item.update({name: value for name, value in optional.items() if value is not None})
    return item


def _opt_n(value: float | None) -> dict[str, str] | None:
    return None if value is None else _n(value)


def _from_item(item: Mapping[str, Any]) -> Session:
    """Parse an item; a malformed one fails closed as a store fault (never as 'not found')."""
    try:
        status = item["status"]["S"]
        if status not in (STATUS_ACTIVE, STATUS_REVOKED):
            raise ValueError("status")
        return Session(
            session_id=item["session_id"]["S"],
            user_id=item["user_id"]["S"],
            created_at=_float(item["created_at"]),
            last_activity=_float(item["last_activity"]),
            idle_expires_at=_int(item["idle_expires_at"]),
            absolute_expires_at=_int(item["absolute_expires_at"]),
            current_jti=item["current_jti"]["S"],
            generation=_int(item["generation"]),
            status=cast(SessionStatus, status),
            device_id=_opt_s(item, "device_id"),
            source_ip=_opt_s(item, "source_ip"),
            user_agent=_opt_s(item, "user_agent"),
            security_level=_int(item["security_level"]),
            previous_jti=_opt_s(item, "previous_jti"),
            previous_generation=_int(item["previous_generation"])
            if "previous_generation" in item
            else None,
            previous_rotated_at=_float(item["previous_rotated_at"])
            if "previous_rotated_at" in item
            else None,
            revoked_reason=_opt_s(item, "revoked_reason"),
            revoked_at=_float(item["revoked_at"]) if "revoked_at" in item else None,
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise StoreUnavailable("malformed session item") from exc


# What a session check reads of a session item (ProjectionExpression): no refresh-token ids.
STANDING_ATTRIBUTES: Final = (
    PARTITION_KEY,
    SORT_KEY,
    "session_id",
    "user_id",
    "status",
    "created_at",
    "idle_expires_at",
    "absolute_expires_at",
    "device_id",
    "revoked_reason",
)


def _standing_from_item(item: Mapping[str, Any]) -> SessionStanding:
    try:
        status = item["status"]["S"]
        if status not in (STATUS_ACTIVE, STATUS_REVOKED):
            raise ValueError("status")
        return SessionStanding(
            session_id=item["session_id"]["S"],
            user_id=item["user_id"]["S"],
            status=cast(SessionStatus, status),
            created_at=_float(item["created_at"]),
            idle_expires_at=_int(item["idle_expires_at"]),
            absolute_expires_at=_int(item["absolute_expires_at"]),
            device_id=_opt_s(item, "device_id"),
            revoked_reason=_opt_s(item, "revoked_reason"),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise StoreUnavailable("malformed session item") from exc


def _opt_s(item: Mapping[str, Any], name: str) -> str | None:
    return str(item[name]["S"]) if name in item else None


def _float(value: Mapping[str, str]) -> float:
    return float(value["N"])


def _int(value: Mapping[str, str]) -> int:
    number = Decimal(value["N"])
    if number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)
