"""The one place the user store and the rate limiter touch boto3: client creation and the
translation of AWS errors into the error tree.

boto3 and botocore are imported inside the functions, never at module import, so importing
``tokencore.users`` or ``tokencore.ratelimit`` (and every pure-core test) does not load them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokencore.errors import StoreUnavailable

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
# Per-item cancellation codes that mean "the state was not what this write expected", as
# opposed to a capacity or service failure of the transaction.
_EXPECTED_CANCELLATIONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


class ConditionFailed(Exception):
    """A conditional write was refused. ``reasons`` holds the per-item cancellation codes of a
    transaction (``"None"`` for an item that was fine), empty for a single-item write.

    Internal: each store translates it into its own TokenCoreError at the call site."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("condition failed")
        self.reasons = reasons


def default_boto_config() -> Any:
    """Short timeouts and standard retries: a login waits a few seconds at most on the store
    before answering 503, instead of hanging until API Gateway's 30 s integration timeout."""
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

    return Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 3, "mode": "standard"},  # 1 call + 2 retries
    )


def make_client(boto_config: Any = None) -> Any:
    """A DynamoDB client from a fresh session (sessions are not thread-safe; clients are).
    The endpoint comes from boto3's own resolution, so ``AWS_ENDPOINT_URL`` is honoured."""
    import boto3  # type: ignore[import-untyped,unused-ignore]

    config = boto_config if boto_config is not None else default_boto_config()
    return boto3.session.Session().client("dynamodb", config=config)


def call_dynamodb(
    client: Any, operation: str, kwargs: dict[str, Any], *, what: str
) -> dict[str, Any]:
    """``client.<operation>(**kwargs)``. A refused condition raises ConditionFailed; every other
    AWS or transport error raises StoreUnavailable from it. Messages carry the operation and
    the AWS error code only, never keys or values (they may hold a username)."""
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
        BotoCoreError,
        ClientError,
    )

    method: Callable[..., dict[str, Any]] = getattr(client, operation)
    try:
        return method(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code") or "unknown")
        if code == CONDITION_FAILED:
            raise ConditionFailed([]) from exc
        if code == TRANSACTION_CANCELED:
            reasons = [
                str(reason.get("Code") or "None")
                for reason in exc.response.get("CancellationReasons", [])
            ]
            if _EXPECTED_CANCELLATIONS.intersection(reasons):
                raise ConditionFailed(reasons) from exc
        raise StoreUnavailable(f"{what}: {operation} failed ({code})") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"{what}: {operation} failed ({type(exc).__name__})") from exc
