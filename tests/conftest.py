"""Shared fixtures. Nothing here talks to real AWS: credentials are fake and moto answers."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.clock import ManualClock
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

# Hypothesis times every example (a 200 ms deadline) and the generation of its data (the
# too_slow health check): on a loaded machine both fail for speed, not for a bug. No test here
# depends on how fast the machine is; speed is `make bench`'s business.
settings.register_profile("tokencore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tokencore")


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test builds Settings from its own environment."""
    reset_settings()
    yield
    reset_settings()


class _InProcessAwsEndpoint:
    """moto's ``mock_aws`` answers botocore only; tokencore's boto3-free calls
    (``tokencore.awshttp``: the verifiers' key source) speak HTTP. This serves them from the
    same moto backends over 127.0.0.1, so the in-process tiers run the deployed default path.
    Started on the first such call (importing moto's server costs about a second)."""

    def __init__(self) -> None:
        self._url: str | None = None
        self._server: Any = None

    def url(self) -> str:
        if self._url is None:
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self._url = f"http://{host}:{port}"
        return self._url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


_AWS_HTTP = _InProcessAwsEndpoint()


@pytest.fixture(scope="session", autouse=True)
def _boto3_free_calls_reach_moto() -> Iterator[None]:
    import tokencore.awshttp as awshttp

    configured = awshttp.endpoint_url

    def endpoint_url(service: str, region: str) -> str:
        if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get(
            "AWS_ENDPOINT_URL_" + service.upper()
        ):
            return configured(service, region)  # a test that names an endpoint gets it
        return _AWS_HTTP.url()

    awshttp.endpoint_url = endpoint_url
    try:
        yield
    finally:
        awshttp.endpoint_url = configured
        _AWS_HTTP.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS_DIR.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS_DIR} (shared/ must lie beside the repo)")
    return VECTORS_DIR


# --- the security tier's whole-run hooks (tests/security/run_hooks.py) -------------------------
# Every log line of the run is captured and every secret the run produces is registered, from
# session start; the log-hygiene check (marked run_last) scans them after every other test, and
# the summary prints the attack table and the number of lines scanned.
from tests.security import run_hooks as _security  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    _security.configure(config)


def pytest_sessionstart(session: pytest.Session) -> None:
    _security.session_start()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _security.order_last(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    # The run keeps what collection imported alive to its end (boto3, moto and the rest,
    # ~100,000 objects), and CPython's full collections rescan all of it: a fifth of the
    # functional tier's CPU time. Freeze it, and collect in full a tenth as often (the young
    # generations, where almost all garbage dies, run as before).
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _security.log_report(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _security.session_finish(session)


def pytest_terminal_summary(terminalreporter: object) -> None:
    _security.terminal_summary(terminalreporter)
