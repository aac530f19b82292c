"""Fixed-window rate limits: one interface, an in-memory and a DynamoDB backend.

Fail mode: closed. A store error raises StoreUnavailable (503 with Retry-After), never an
allowance: see docs/users-and-rate-limits.md. Importing this package never imports boto3.
"""

from tokencore.ratelimit.base import (
    SCOPE_LOGIN_IP,
    SCOPE_LOGIN_USER,
    SCOPE_REFRESH_USER,
    RateLimiter,
)
from tokencore.ratelimit.dynamodb import DynamoDBRateLimiter
from tokencore.ratelimit.memory import InMemoryRateLimiter

__all__ = [
    "SCOPE_LOGIN_IP",
    "SCOPE_LOGIN_USER",
    "SCOPE_REFRESH_USER",
    "DynamoDBRateLimiter",
    "InMemoryRateLimiter",
    "RateLimiter",
]
