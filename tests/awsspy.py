"""One seam for every AWS call a test watches or breaks: botocore's client boundary
(``BaseClient._make_api_call``) and tokencore's boto3-free one (``AwsJsonClient.call``, the
verifiers' key reads), so a spy counts both and a fault lands on either."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

from tokencore.awshttp import AwsCallFailed, AwsJsonClient


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    proceed: Callable[[], Any]  # makes the real call
    stdlib: bool  # through tokencore.awshttp (else botocore)
    endpoint: str = ""

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    def refuse(self, code: str) -> AwsCallFailed:
        """What the boto3-free client raises when AWS answers with ``code``."""
        return AwsCallFailed(code, 400)


def intercept_aws_calls(
    monkeypatch: pytest.MonkeyPatch, interceptor: Callable[[AwsCall], Any]
) -> None:
    botocore_call = BaseClient._make_api_call
    stdlib_call = AwsJsonClient.call

    def via_botocore(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        return interceptor(
            AwsCall(
                service,
                operation,
                lambda: botocore_call(client, operation, params),
                stdlib=False,
                endpoint=client.meta.endpoint_url,
            )
        )

    def via_stdlib(client: AwsJsonClient, operation: str, payload: dict[str, Any]) -> Any:
        proceed = lambda: stdlib_call(client, operation, payload)  # noqa: E731
        return interceptor(AwsCall(client.service, operation, proceed, stdlib=True))

    monkeypatch.setattr(BaseClient, "_make_api_call", via_botocore)
    monkeypatch.setattr(AwsJsonClient, "call", via_stdlib)


def record_aws_calls(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Append ``service:Operation`` to ``calls`` for every AWS call, then make it."""

    def record(call: AwsCall) -> Any:
        calls.append(call.name)
        return call.proceed()

    intercept_aws_calls(monkeypatch, record)
