"""Users: the store interface with an in-memory and a DynamoDB backend, Argon2id passwords,
and the account service. Importing this package never imports boto3."""

from tokencore.users.base import (
    User,
    UserPage,
    UserStore,
    UserSummary,
    display_username,
    normalize_username,
    username_rate_key,
    validate_email,
    validate_roles,
)
from tokencore.users.dynamodb import DynamoDBUserStore
from tokencore.users.memory import InMemoryUserStore
from tokencore.users.passwords import (
    Passwords,
    check_new_password,
    owasp_hasher,
    validate_password,
)
from tokencore.users.service import (
    REASON_PASSWORD_CHANGED,
    REASON_USER_DISABLED,
    RevokeAllSessions,
    SessionRevoker,
    UserService,
)

__all__ = [
    "REASON_PASSWORD_CHANGED",
    "REASON_USER_DISABLED",
    "DynamoDBUserStore",
    "InMemoryUserStore",
    "Passwords",
    "RevokeAllSessions",
    "SessionRevoker",
    "User",
    "UserPage",
    "UserService",
    "UserStore",
    "UserSummary",
    "check_new_password",
    "display_username",
    "normalize_username",
    "owasp_hasher",
    "username_rate_key",
    "validate_email",
    "validate_password",
    "validate_roles",
]
