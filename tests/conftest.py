"""Shared fixtures. Nothing here talks to real AWS: credentials are fake and moto answers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokencore.clock import ManualClock
from tokencore.config import reset_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# shared/ lies beside the checkout (../shared), as it does for CI.
VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"
EVENTS_DIR = REPO_ROOT / "events"

# Set before any boto3 client exists: moto must never see real credentials, and a stray real
# endpoint must never be reached from a test.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "tokencore-test",
        "POWERTOOLS_METRICS_NAMESPACE": "TokencoreTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test builds Settings from its own environment."""
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS_DIR.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS_DIR} (shared/ must lie beside the repo)")
    return VECTORS_DIR
