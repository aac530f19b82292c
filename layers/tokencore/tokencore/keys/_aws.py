"""What the AWS key backends share: a lazily created client and safe error codes.

boto3 is imported here, inside a function, never at module import: the authorizer's fast
path imports ``tokencore.keys`` and must not pay for boto3.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_SAFE_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def default_boto_config() -> Any:
    """Short timeouts, standard retries: a key fetch or a KMS signature that hangs turns into
    KeyUnavailable (503, retry) within seconds, not at the Lambda or API Gateway timeout."""
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

    return Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )


class LazyClient:
    """A boto3 client given by the caller, or created on first use (Powertools style).

    boto3 reads ``AWS_ENDPOINT_URL`` (and the per-service variants) from the environment
    itself, so the local stack and moto need no endpoint here.
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
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create()
                client = self._client
        return client

    def _create(self) -> Any:
        config = self._config if self._config is not None else default_boto_config()
        session = self._session
        if session is None:
            import boto3  # type: ignore[import-untyped,unused-ignore]

            # A session of our own: boto3's default session is not thread-safe; clients are.
            session = boto3.session.Session()
        return session.client(self._service, config=config)


def aws_errors() -> tuple[type[Exception], ...]:
    """The botocore exceptions that mean "the call failed" (imported only once a call ran)."""
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
        BotoCoreError,
        ClientError,
    )

    return (BotoCoreError, ClientError)


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
