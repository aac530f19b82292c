"""The curl walkthrough `make dev` prints runs exactly as printed (bash and curl 7.79+: older
curl never sends a Secure cookie over plain http)."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

SECURE_COOKIES_ON_LOOPBACK = (7, 79)


def curl_version() -> tuple[int, int] | None:
    curl = shutil.which("curl")
    if curl is None or shutil.which("bash") is None:
        return None
    first = subprocess.run(
        [curl, "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    found = re.match(r"curl (\d+)\.(\d+)", first)
    return (int(found.group(1)), int(found.group(2))) if found else None


def printed_walkthrough(stack: RunningStack) -> str:
    banner = stack.stdout.read_text(errors="replace")
    start = banner.index("  API=")
    end = banner.index("$API/auth/logout", start) + len("$API/auth/logout")
    return textwrap.dedent(banner[start:end])


def test_the_printed_walkthrough_runs_as_printed(
    strict_stack: RunningStack, tmp_path: Path
) -> None:
    version = curl_version()
    if version is None or version < SECURE_COOKIES_ON_LOOPBACK:
        pytest.skip(f"needs bash and curl 7.79+ (found {version})")
    script = printed_walkthrough(strict_stack)
    assert "sleep" not in script  # REFRESH_REUSE_GRACE_SECONDS=0 on this stack
    result = subprocess.run(
        ["bash", "-eu", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    statuses = [
        line.rsplit(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("{")
    ]
    # /me, refresh, replayed old token, its successor, the second login
    assert statuses == ["200", "200", "401", "401", "200"], result.stdout
    assert "HTTP/1.1 204" in result.stdout
    assert "__Secure-rt=; Path=/auth; Max-Age=0" in result.stdout
