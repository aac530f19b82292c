"""Waiting for a local stack that another process started (the e2e tests, `make bench`)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from typing import Literal

DISCOVERY_PATH = "/.well-known/openid-configuration"


def wait_until_serving(
    process: subprocess.Popen[bytes], api_url: str, deadline_seconds: float
) -> Literal["ready", "exited", "late"]:
    """Poll the stack's discovery document until it answers 200 ("ready"), the process exits
    ("exited"), or ``deadline_seconds`` pass ("late"). A start-up has no event to wait on
    across processes; the pause between polls doubles as the liveness check."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(api_url + DISCOVERY_PATH, timeout=5) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return "ready"
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        return "exited"
    return "late"
