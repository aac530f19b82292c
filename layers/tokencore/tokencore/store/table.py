"""Single-table layout for sessions, users and rate-limit counters.

One table, because the three kinds share one lifecycle and one TTL attribute, and a single
table is one IAM resource, one global table to replicate and one thing to back up. Every item
is addressed by ``pk``/``sk``; the ``by_user`` index lists a user's sessions.

- session: pk ``SESSION#<session_id>``, sk ``META``; in ``by_user``: gsi1pk ``USER#<user_id>``,
  gsi1sk ``SESSION#<created:012d>#<session_id>`` (a user's sessions, oldest first).
- user profile: pk ``USER#<user_id>``, sk ``PROFILE``.
- username claim: pk ``USERNAME#<normalized username>``, sk ``USERNAME`` (uniqueness).
- rate-limit window: pk ``RATE#<scope>#<sha256 of key>``, sk ``WINDOW#<window start>``.

``expires_at`` (epoch seconds) is the TTL attribute. DynamoDB deletes expired items lazily
(up to about two days late), so every read checks expiry itself.

template.yaml declares the same table; a test builds the table from template.yaml and compares
it with ``TABLE_DEFINITION`` so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
SORT_KEY = "sk"
USER_INDEX_NAME = "by_user"
USER_INDEX_PARTITION_KEY = "gsi1pk"
USER_INDEX_SORT_KEY = "gsi1sk"
TTL_ATTRIBUTE = "expires_at"

SESSION_PREFIX = "SESSION#"
SESSION_SORT = "META"
USER_PREFIX = "USER#"
USER_SORT = "PROFILE"
USERNAME_PREFIX = "USERNAME#"
USERNAME_SORT = "USERNAME"
RATE_PREFIX = "RATE#"
RATE_SORT_PREFIX = "WINDOW#"

# The CreateTable arguments (less the name and billing mode), in DynamoDB's own vocabulary.
TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": SORT_KEY, "AttributeType": "S"},
        {"AttributeName": USER_INDEX_PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": USER_INDEX_SORT_KEY, "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": USER_INDEX_NAME,
            "KeySchema": [
                {"AttributeName": USER_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": USER_INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}


def create_table(client: Any, table_name: str) -> None:
    """Create the table on demand with TTL enabled (local stack and tests; SAM does it on AWS)."""
    client.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", **TABLE_DEFINITION)
    client.get_waiter("table_exists").wait(TableName=table_name)
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
