"""Client construction for the user store and rate limiter: no hard-coded endpoint."""

from __future__ import annotations

import pytest

from tokencore.awsclient import make_client
from tokencore.clock import ManualClock
from tokencore.ratelimit import DynamoDBRateLimiter
from tokencore.users import DynamoDBUserStore


def test_aws_endpoint_url_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert make_client().meta.endpoint_url == "http://127.0.0.1:4566"
    store = DynamoDBUserStore("t", ManualClock())
    limiter = DynamoDBRateLimiter("t", ManualClock())
    assert store._client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert limiter._client.meta.endpoint_url == "http://127.0.0.1:4566"


def test_default_endpoint_is_regional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    assert make_client().meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


def test_default_config_bounds_waiting() -> None:
    config = make_client().meta.config
    assert config.connect_timeout == 1
    assert config.read_timeout == 2
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
