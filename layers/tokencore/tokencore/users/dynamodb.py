"""DynamoDB user store on the single table (see tokencore.store.table).

Items:

- profile pk ``USER#<user_id>``, sk ``PROFILE``: the ``User`` fields. No ``gsi1pk``, so a user's
  profile never shows up in the ``by_user`` index that lists their sessions.
- claim   pk ``USERNAME#<normalized>``, sk ``USERNAME``: exists iff the name is taken, and
  carries a copy of the profile's fields, so a login finds everything it needs about a user in
  ONE read by name (which the login store batches with the rate-limit counters). The copy never
  drifts: every write touches both items in one transaction (create, roles, disable, password,
  rehash). A claim written before the copy existed (``user_id`` only) still works, at the cost
  of the profile read it used to take.

A write that ends every session of the user (the revoke-all marker, disabling, a new password)
also lists the user on the revocation list (tokencore.revocations: ``u_<user id>`` = not
before) in the same transaction, so the entry exists exactly when the write landed; concurrent
revocations meet on the list's bucket item, and a conflict there is retried.

Neither kind carries ``expires_at``: accounts do not expire. boto3 is imported on the store's
first call (tokencore.awsclient), never when ``tokencore.users`` is imported or a store is
built, so the in-memory path and the pure core load without it. Every AWS failure becomes
StoreUnavailable (``from`` the original), except the condition failures this module expects
and translates.
"""

from __future__ import annotations

from typing import Any, Final

from tokencore import revocations
from tokencore.awsclient import ConditionFailed, LazyClient, call_dynamodb
from tokencore.clock import Clock
from tokencore.errors import StoreConflict, StoreUnavailable, UserExists, UserNotFound
from tokencore.store.table import (
    PARTITION_KEY,
    SORT_KEY,
    USER_PREFIX,
    USER_SORT,
    USERNAME_PREFIX,
    USERNAME_SORT,
)
from tokencore.users.base import (
    User,
    UserChanges,
    UserPage,
    UserStanding,
    UserStore,
    UserSummary,
)

# Named conditions (the state each write expects), joined where a write needs several.
# create:  (nothing) --claim + profile--> claim exists, profile exists
claim_is_free = f"attribute_not_exists({PARTITION_KEY})"
profile_is_free = f"attribute_not_exists({PARTITION_KEY})"
# update:  profile exists, claim names the user --SET fields on both--> the same
user_exists = f"attribute_exists({PARTITION_KEY})"
claim_names_user = "#user_id = :user_id"
# rehash:  both hold the hash we verified --SET hash on both--> both hold the new hash
hash_is_unchanged = "#password_hash = :expected_hash"
# (an old user_id-only claim holds no hash to compare)
claim_hash_is_unchanged = f"(attribute_not_exists(#password_hash) OR {hash_is_unchanged})"
# revoke all: marker < at --SET marker = at on both--> marker = at (never moves back; items
# written before the marker existed have none)
marker_is_older = (
    "(attribute_not_exists(#sessions_revoked_at) OR #sessions_revoked_at < :sessions_revoked_at)"
)
# What a session check reads of a profile (ProjectionExpression): never the password hash, the
# name or the email.
STANDING_ATTRIBUTES = (
    PARTITION_KEY,
    SORT_KEY,
    "user_id",
    "roles",
    "disabled",
    "password_changed_at",
    "sessions_revoked_at",
)
# What a listing reads of a profile (never the hash), and which items are profiles.
SUMMARY_ATTRIBUTES = (
    "user_id",
    "username",
    "email",
    "roles",
    "disabled",
    "created_at",
    "password_changed_at",
    "sessions_revoked_at",
)
is_profile = "begins_with(#pk, :user_prefix) AND #sk = :profile"
# Items a listing Scan reads per request; each page costs at most this many (1 MB at most).
SCAN_PAGE_ITEMS = 500
# The attribute only a full claim (a profile copy) has.
_COPY_MARKER = "username_normalized"
# Default access-token TTL plus leeway (config.Settings): how long a list entry matters.
DEFAULT_REVOCATION_WINDOW: Final = 930


class DynamoDBUserStore(UserStore):
    def __init__(
        self,
        table_name: str,
        clock: Clock,
        boto3_client: Any = None,
        boto_config: Any = None,
        *,
        boto3_session: Any = None,
        revocation_window_seconds: int = DEFAULT_REVOCATION_WINDOW,
    ) -> None:
        self._table = table_name
        self._clock = clock  # the not-before of a list entry written with a disable
        self._revocation_window = revocation_window_seconds
        self._client = LazyClient("dynamodb", boto3_client, boto3_session, boto_config)

    @property
    def table_name(self) -> str:
        return self._table

    # --- I/O -----------------------------------------------------------------------------

    def _insert(self, user: User) -> None:
        claim = {**_to_item(user), **claim_key(user.normalized_username)}
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": claim,
                            "ConditionExpression": claim_is_free,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _to_item(user),
                            "ConditionExpression": profile_is_free,
                        }
                    },
                ],
            )
        except ConditionFailed as exc:
            claim_reason = exc.reasons[0] if exc.reasons else ""
            profile_reason = exc.reasons[1] if len(exc.reasons) > 1 else ""
            if claim_reason == "ConditionalCheckFailed":
                raise UserExists("username is taken") from exc
            if profile_reason == "ConditionalCheckFailed":
                raise StoreConflict("user id collision; retry") from exc
            # TransactionConflict (a concurrent create of the same name) and the like: a retry
            # will either succeed or see the claim and answer UserExists.
            raise StoreConflict("user creation raced another write; retry") from exc

    def _load(self, user_id: str) -> User | None:
        response = self._call("get_item", **self._get_args(_profile_key(user_id)))
        item = response.get("Item")
        return None if item is None else _from_item(item)

    def _load_by_username(self, normalized_username: str) -> User | None:
        claim = self._call("get_item", **self._get_args(claim_key(normalized_username)))
        return self.user_from_claim(claim.get("Item"))

    @staticmethod
    def profile_key(user_id: str) -> dict[str, Any]:
        """The key of a user's profile item (for reads batched with other stores' items)."""
        return _profile_key(user_id)

    @staticmethod
    def standing_from_profile(item: dict[str, Any]) -> UserStanding:
        """Parse the STANDING_ATTRIBUTES of a profile item read elsewhere (StoreUnavailable
        when malformed)."""
        try:
            roles = tuple(str(role["S"]) for role in item["roles"]["L"])
            disabled = item["disabled"]["BOOL"]
            password_changed_at = float(item["password_changed_at"]["N"])
            sessions_revoked_at = float(item.get("sessions_revoked_at", {"N": "0"})["N"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable("user item is malformed") from exc
        if not isinstance(disabled, bool):
            raise StoreUnavailable("user item is malformed (disabled)")
        return UserStanding(
            user_id=_string(item, "user_id"),
            roles=roles,
            disabled=disabled,
            password_changed_at=password_changed_at,
            sessions_revoked_at=sessions_revoked_at,
        )

    def user_from_claim(self, claim: dict[str, Any] | None) -> User | None:
        """The user a claim item names (None for no claim). A full claim is parsed as is; an
        old ``user_id``-only claim costs the profile read."""
        if claim is None:
            return None
        if _COPY_MARKER in claim:
            return _from_item(claim)
        return self._load(_string(claim, "user_id"))

    def _list(self, limit: int, cursor: str | None) -> UserPage:
        """A filtered Scan (the table holds sessions and counters too), resumed after the
        cursor's profile: a Scan may start after any item's key, so a page cut short of the
        Scan's own page loses nothing. Read consistently: a user created a moment ago shows."""
        names = {f"#{i}": name for i, name in enumerate(SUMMARY_ATTRIBUTES)}
        args: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": is_profile,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": {**names, "#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {
                ":user_prefix": {"S": USER_PREFIX},
                ":profile": {"S": USER_SORT},
            },
            "ConsistentRead": True,
            "Limit": SCAN_PAGE_ITEMS,
        }
        if cursor is not None:
            args["ExclusiveStartKey"] = _profile_key(cursor)
        found: list[UserSummary] = []
        while True:
            response = self._call("scan", **args)
            items = response.get("Items") or []
            resume = response.get("LastEvaluatedKey")
            for index, item in enumerate(items):
                found.append(_summary_from_item(item))
                if len(found) == limit:
                    more = resume is not None or index < len(items) - 1
                    return UserPage(tuple(found), found[-1].user_id if more else None)
            if resume is None:
                return UserPage(tuple(found), None)
            args["ExclusiveStartKey"] = resume

    def _update(self, user_id: str, changes: UserChanges) -> User:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: list[str] = []
        for attribute, value in (
            ("roles", None if changes.roles is None else _roles_value(changes.roles)),
            ("disabled", None if changes.disabled is None else {"BOOL": changes.disabled}),
            (
                "password_hash",
                None if changes.password_hash is None else {"S": changes.password_hash},
            ),
            (
                "password_changed_at",
                None
                if changes.password_changed_at is None
                else {"N": _number(changes.password_changed_at)},
            ),
            (
                "sessions_revoked_at",
                None
                if changes.sessions_revoked_at is None
                else {"N": _number(changes.sessions_revoked_at)},
            ),
        ):
            if value is None:
                continue
            names[f"#{attribute}"] = attribute
            values[f":{attribute}"] = value
            clauses.append(f"#{attribute} = :{attribute}")
        current = self._load(user_id)  # the claim's key is the normalized name
        if current is None:
            raise UserNotFound("user not found")
        if not clauses:
            return current
        # Disabling, or a new password, ends every session: list the user from now on.
        ends_sessions = changes.disabled is True or changes.password_changed_at is not None
        self._update_both(
            current,
            "SET " + ", ".join(clauses),
            names,
            values,
            user_exists,
            listing=self._user_entry(user_id, self._clock.now()) if ends_sessions else None,
        )
        return changes.apply_to(current)

    def _user_entry(self, user_id: str, not_before: float) -> dict[str, Any]:
        return revocations.user_entry_update(
            self._table, user_id, not_before, self._revocation_window
        )

    def _swap_password_hash(self, user_id: str, expected_hash: str, new_hash: str) -> bool:
        current = self._load(user_id)
        if current is None or current.password_hash != expected_hash:
            return False
        try:
            self._update_both(
                current,
                "SET #password_hash = :new_hash",
                {"#password_hash": "password_hash"},
                {":new_hash": {"S": new_hash}, ":expected_hash": {"S": expected_hash}},
                f"{user_exists} AND {hash_is_unchanged}",
                claim_condition=claim_hash_is_unchanged,
            )
        except UserNotFound:
            return False
        return True

    def _raise_sessions_revoked_at(self, user_id: str, at: float) -> User:
        current = self._load(user_id)
        if current is None:
            raise UserNotFound("user not found")
        if at <= current.sessions_revoked_at:
            return current
        try:
            self._update_both(
                current,
                "SET #sessions_revoked_at = :sessions_revoked_at",
                {"#sessions_revoked_at": "sessions_revoked_at"},
                {":sessions_revoked_at": {"N": _number(at)}},
                f"{user_exists} AND {marker_is_older}",
                claim_condition=marker_is_older,
                listing=self._user_entry(user_id, at),
            )
        except UserNotFound as refused:
            # Either the user is gone, or a later "revoke all" landed first: then it stands.
            latest = self._load(user_id)
            if latest is None:
                raise
            if latest.sessions_revoked_at < at:
                raise StoreConflict("revoke-all marker raced another write; retry") from refused
            return latest
        return UserChanges(sessions_revoked_at=at).apply_to(current)

    def _update_both(
        self,
        user: User,
        update: str,
        names: dict[str, str],
        values: dict[str, Any],
        profile_condition: str,
        *,
        claim_condition: str | None = None,
        listing: dict[str, Any] | None = None,
    ) -> None:
        """Apply one update expression to the profile and its claim, in one transaction, so
        the claim's copy never drifts; with ``listing``, the user's revocation-list entry in
        the same transaction. UserNotFound when a condition fails (the user is gone, or the
        state the caller expected changed); StoreConflict on a concurrent transaction (with a
        listing, after a few retries: the bucket item is shared by every revocation)."""
        claim_check = claim_names_user
        if claim_condition is not None:
            claim_check = f"{claim_names_user} AND {claim_condition}"
        items = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _profile_key(user.user_id),
                    "UpdateExpression": update,
                    "ConditionExpression": profile_condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": claim_key(user.normalized_username),
                    "UpdateExpression": update,
                    "ConditionExpression": claim_check,
                    "ExpressionAttributeNames": {**names, "#user_id": "user_id"},
                    "ExpressionAttributeValues": {
                        **values,
                        ":user_id": {"S": user.user_id},
                    },
                }
            },
        ]
        if listing is not None:
            items.append(listing)
        attempts = revocations.CONFLICT_ATTEMPTS if listing is not None else 1
        for attempt in range(attempts):
            try:
                self._call("transact_write_items", TransactItems=items)
            except ConditionFailed as exc:
                if "ConditionalCheckFailed" in exc.reasons:
                    raise UserNotFound("user not found or changed") from exc
                if attempt + 1 == attempts:
                    raise StoreConflict("user update raced another write; retry") from exc
                revocations.pause_after_conflict(attempt)
                continue
            return

    # --- plumbing ------------------------------------------------------------------------

    def _get_args(self, key: dict[str, Any], projection: str | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"TableName": self._table, "Key": key, "ConsistentRead": True}
        if projection is not None:
            args["ProjectionExpression"] = projection
        return args

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return call_dynamodb(self._client, operation, kwargs, what="user store")


def _profile_key(user_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": USER_PREFIX + user_id}, SORT_KEY: {"S": USER_SORT}}


def claim_key(normalized_username: str) -> dict[str, Any]:
    """The key of the item that claims a normalized username."""
    return {
        PARTITION_KEY: {"S": USERNAME_PREFIX + normalized_username},
        SORT_KEY: {"S": USERNAME_SORT},
    }


def _number(value: float) -> str:
    # repr of a float is the shortest string that reads back to the same float.
    return repr(float(value))


def _roles_value(roles: tuple[str, ...]) -> dict[str, Any]:
    # A list, not a string set: a set cannot be empty, and order is already canonical.
    return {"L": [{"S": role} for role in roles]}


def _to_item(user: User) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_profile_key(user.user_id),
        "user_id": {"S": user.user_id},
        "username": {"S": user.username},
        "username_normalized": {"S": user.normalized_username},
        "password_hash": {"S": user.password_hash},
        "roles": _roles_value(user.roles),
        "disabled": {"BOOL": user.disabled},
        "password_changed_at": {"N": _number(user.password_changed_at)},
        "created_at": {"N": _number(user.created_at)},
        "sessions_revoked_at": {"N": _number(user.sessions_revoked_at)},
    }
    if user.email is not None:
        item["email"] = {"S": user.email}
    return item


def _string(item: dict[str, Any], name: str) -> str:
    try:
        value = item[name]["S"]
    except (KeyError, TypeError) as exc:
        raise StoreUnavailable(f"user item is malformed ({name})") from exc
    if not isinstance(value, str):
        raise StoreUnavailable(f"user item is malformed ({name})")
    return value


def _summary_from_item(item: dict[str, Any]) -> UserSummary:
    """Parse a listed profile (SUMMARY_ATTRIBUTES); malformed is a store fault."""
    return UserSummary(**_profile_fields(item))


def _from_item(item: dict[str, Any]) -> User:
    """Parse a profile; a malformed item is a store fault, never a half-filled User."""
    return User(
        **_profile_fields(item),
        normalized_username=_string(item, "username_normalized"),
        password_hash=_string(item, "password_hash"),
    )


def _profile_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The fields a profile and its listing share, parsed once."""
    try:
        roles = tuple(str(role["S"]) for role in item["roles"]["L"])
        disabled = item["disabled"]["BOOL"]
        password_changed_at = float(item["password_changed_at"]["N"])
        created_at = float(item["created_at"]["N"])
        # Absent from items written before revoke-all kept a marker: nothing revoked yet.
        sessions_revoked_at = float(item.get("sessions_revoked_at", {"N": "0"})["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreUnavailable("user item is malformed") from exc
    if not isinstance(disabled, bool):
        raise StoreUnavailable("user item is malformed (disabled)")
    return {
        "user_id": _string(item, "user_id"),
        "username": _string(item, "username"),
        "email": _string(item, "email") if "email" in item else None,
        "roles": roles,
        "disabled": disabled,
        "password_changed_at": password_changed_at,
        "created_at": created_at,
        "sessions_revoked_at": sessions_revoked_at,
    }
