"""The one place tokencore's AWS backends get their plumbing: a lazily created boto3 client
with bounded waiting, safe error codes, and the DynamoDB call wrapper the stores share.

boto3 and botocore are imported inside functions, never at module import: importing
``tokencore.keys``, ``tokencore.sessions``, ``tokencore.users`` or ``tokencore.ratelimit`` (the
authorizer's fast path, every pure-core test) does not load them. A backend imports boto3 when
it first creates its client, on its first call.

Errors: ``call_dynamodb`` turns a refused condition into ConditionFailed (each store translates
it at the call site) and every other AWS or transport failure into StoreUnavailable. The key
backends catch ``aws_errors()`` at their own call sites and raise KeyUnavailable, each with a
message naming what it was reading. Either way, messages carry the operation and the AWS error
code only: AWS messages may quote ARNs, keys and values (a username, a secret id).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokencore.errors import StoreUnavailable
from tokencore.store.table import PARTITION_KEY, SORT_KEY

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
# Per-item cancellation codes that mean "the state was not what this write expected", as
# opposed to a capacity or service failure of the transaction.
_EXPECTED_CANCELLATIONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
_SAFE_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def default_boto_config() -> Any:
    """Short timeouts, standard retries (1 call + 2 retries): a store or key call that hangs
    becomes StoreUnavailable or KeyUnavailable (503, retry) within seconds, not at the Lambda
    or API Gateway timeout. Botocore's own default for DynamoDB is 10 legacy retries and 60 s
    timeouts."""
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

    return Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )


class LazyClient:
    """A boto3 client given by the caller, or created on first use (Powertools style).

    A created client uses ``boto3_session`` (default: a new session of its own, since boto3's
    default session is not thread-safe; clients are) and ``default_boto_config()`` merged with
    ``boto_config``, whose options win. boto3 reads ``AWS_ENDPOINT_URL`` (and the per-service
    variants) from the environment itself, so the local stack and moto need no endpoint here.
    """

    __slots__ = ("_client", "_config", "_lock", "_service", "_session")

    def __init__(
        self,
        service: str,
        boto3_client: Any | None = None,
        boto3_session: Any | None = None,
        boto_config: Any | None = None,
    ) -> None:
        self._service = service
        self._client = boto3_client
        self._session = boto3_session
        self._config = boto_config
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The client. Creating it can fail (e.g. no region configured) with a BotoCoreError,
        so call this inside the ``try`` that translates ``aws_errors()``."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create()
                client = self._client
        return client

    def _create(self) -> Any:
        quiet_aws_debug_logging()
        config = default_boto_config()
        if self._config is not None:
            config = config.merge(self._config)
        session = self._session
        if session is None:
            session = _new_session()
        return session.client(self._service, config=config)

    def __repr__(self) -> str:
        return f"LazyClient({self._service!r}, created={self._client is not None})"


# botocore logs whole request and response bodies at DEBUG, and ours hold the private key sets
# (GetSecretValue) and session items. A root logger turned up to DEBUG from outside (Lambda's
# ApplicationLogLevel / AWS_LAMBDA_LOG_LEVEL, logging.basicConfig) must not print them, so the
# AWS libraries log at WARNING at most once tokencore creates a client (as KeySetup does).
AWS_LIBRARY_LOGGERS = ("boto3", "botocore", "urllib3", "s3transfer")


def quiet_aws_debug_logging() -> None:
    for name in AWS_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_loader_lock = threading.Lock()
_shared_loader: Any = None


def _new_session() -> Any:
    """A boto3 session of its own (boto3's default session is not thread-safe; clients are)
    that shares one botocore data loader with every other session in the process.

    The loader parses the service models and endpoint rules, which is most of what creating a
    client costs; a container builds several clients (DynamoDB, Secrets Manager, SSM), so
    parsing those files once shortens its cold start. Credentials and configuration stay per
    session.
    """
    global _shared_loader
    import boto3
    import botocore.session
    from botocore.loaders import create_loader

    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = create_loader()
        loader = _shared_loader
    core = botocore.session.Session()
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core)


def aws_errors() -> tuple[type[Exception], type[Exception]]:
    """The botocore exceptions that mean "the call failed" (imported only once a call ran)."""
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
        BotoCoreError,
        ClientError,
    )

    return (ClientError, BotoCoreError)


def error_code(exc: BaseException) -> str:
    """The AWS error code (e.g. ``AccessDeniedException``), or the exception's class name.

    Only the code goes into our messages: AWS messages may quote ARNs and request details.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        code = error.get("Code") if isinstance(error, dict) else None
        if isinstance(code, str) and _SAFE_CODE.fullmatch(code):
            return code
    return type(exc).__name__


class ConditionFailed(Exception):
    """A conditional write was refused.

    ``reasons`` holds the per-item cancellation codes of a transaction (``"None"`` for an item
    that was fine), empty for a single-item write. ``item`` is the item the write was refused
    on, when the request asked for ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` and the item
    exists (a single-item write only; None otherwise).

    Internal: each store translates it into its own outcome or TokenCoreError at the call site.
    """

    def __init__(self, reasons: list[str], item: dict[str, Any] | None = None) -> None:
        super().__init__("condition failed")
        self.reasons = reasons
        self.item = item


def call_dynamodb(
    client: LazyClient, operation: str, kwargs: dict[str, Any], *, what: str
) -> dict[str, Any]:
    """``client.get().<operation>(**kwargs)``.

    A refused condition raises ConditionFailed. Every other AWS or transport error (throttling,
    timeouts, connection errors, a client that cannot be built) raises StoreUnavailable from
    it, which no caller reads as "not found", reuse, or a reason to revoke. The message is
    ``"<what>: <operation> failed (<code>)"``, never keys or values.
    """
    client_error, botocore_error = aws_errors()
    try:
        method: Callable[..., dict[str, Any]] = getattr(client.get(), operation)
        return method(**kwargs)
    except client_error as exc:
        code = error_code(exc)
        response: dict[str, Any] = getattr(exc, "response", {})
        if code == CONDITION_FAILED:
            raise ConditionFailed([], response.get("Item")) from exc
        if code == TRANSACTION_CANCELED:
            reasons = [
                str(reason.get("Code") or "None")
                for reason in response.get("CancellationReasons", [])
            ]
            if _EXPECTED_CANCELLATIONS.intersection(reasons):
                raise ConditionFailed(reasons) from exc
        raise StoreUnavailable(f"{what}: {operation} failed ({code})") from exc
    except botocore_error as exc:
        raise StoreUnavailable(f"{what}: {operation} failed ({error_code(exc)})") from exc


# BatchGetItem may hand back part of a request unprocessed (throttling, size); a few more
# rounds finish it. Beyond that the store is struggling: fail closed.
_BATCH_GET_ROUNDS = 3


def batch_get_items(
    client: LazyClient,
    table_name: str,
    keys: list[dict[str, Any]],
    *,
    what: str,
    attributes: Sequence[str] = (),
) -> list[dict[str, Any] | None]:
    """Strongly consistent BatchGetItem of ``keys`` (at most 100, distinct) on one table: the
    items in the order of ``keys``, None where an item does not exist. Keys are matched on
    their partition and sort key values (BatchGetItem returns items in no particular order).
    ``attributes``, when given, are the only ones read (they must include the key's)."""
    wanted = {_key_id(key): i for i, key in enumerate(keys)}
    found: list[dict[str, Any] | None] = [None] * len(keys)
    pending: list[dict[str, Any]] = keys
    request: dict[str, Any] = {"ConsistentRead": True}
    if attributes:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        request["ProjectionExpression"] = ", ".join(names)
        request["ExpressionAttributeNames"] = names
    for _ in range(_BATCH_GET_ROUNDS):
        response = call_dynamodb(
            client,
            "batch_get_item",
            {"RequestItems": {table_name: {**request, "Keys": pending}}},
            what=what,
        )
        for item in response.get("Responses", {}).get(table_name, []):
            index = wanted.get(_key_id(item))
            if index is None:
                raise StoreUnavailable(f"{what}: batch_get_item returned an unrequested item")
            found[index] = item
        pending = response.get("UnprocessedKeys", {}).get(table_name, {}).get("Keys", [])
        if not pending:
            return found
    raise StoreUnavailable(f"{what}: batch_get_item left keys unprocessed")


def _key_id(item: dict[str, Any]) -> tuple[str, str]:
    try:
        return item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]
    except (KeyError, TypeError) as exc:
        raise StoreUnavailable("batch_get_item: an item lacks its key") from exc
