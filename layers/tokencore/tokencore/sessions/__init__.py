"""Sessions: the state that lets a stateless JWT design log out now and detect stolen refresh
tokens. One interface (``SessionStore``), a DynamoDB backend and an in-memory backend.

Importing this package never imports boto3: the DynamoDB backend loads it on first use.
"""

from tokencore.sessions.base import (
    REASON_ADMIN,
    REASON_EVICTED,
    REASON_LOGOUT,
    REASON_REFRESH_REUSE,
    REASON_REVOKE_ALL,
    STATUS_ACTIVE,
    STATUS_REVOKED,
    RefreshReuseRevoked,
    ReuseEvent,
    RotationResult,
    Session,
    SessionStore,
    new_jti,
    new_session_id,
)
from tokencore.sessions.dynamodb import DynamoDBSessionStore
from tokencore.sessions.memory import InMemorySessionStore

__all__ = [
    "REASON_ADMIN",
    "REASON_EVICTED",
    "REASON_LOGOUT",
    "REASON_REFRESH_REUSE",
    "REASON_REVOKE_ALL",
    "STATUS_ACTIVE",
    "STATUS_REVOKED",
    "DynamoDBSessionStore",
    "InMemorySessionStore",
    "RefreshReuseRevoked",
    "ReuseEvent",
    "RotationResult",
    "Session",
    "SessionStore",
    "new_jti",
    "new_session_id",
]
