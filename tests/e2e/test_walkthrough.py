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
WALKTHROUGH_DEADLINE_SECONDS = 180  # a hang bound: the script takes seconds
COMPACT_JWS = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")  # how a failure report hides tokens


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


def run_walkthrough(stack: RunningStack, directory: Path) -> subprocess.CompletedProcess[str]:
    version = curl_version()
    if version is None or version < SECURE_COOKIES_ON_LOOPBACK:
        pytest.skip(f"needs bash and curl 7.79+ (found {version})")
    return subprocess.run(
        ["bash", "-eu", "-c", printed_walkthrough(stack)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=WALKTHROUGH_DEADLINE_SECONDS,
        check=False,
    )


def assert_walked_through(result: subprocess.CompletedProcess[str]) -> None:
    shown = COMPACT_JWS.sub("<token>", result.stdout)
    assert result.returncode == 0, COMPACT_JWS.sub("<token>", result.stderr)
    statuses = [
        line.rsplit(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("{")
    ]
    # /me, refresh, replayed old token, its successor, the second login
    assert statuses == ["200", "200", "401", "401", "200"], shown
    assert "HTTP/1.1 204" in result.stdout, shown
    assert "__Secure-rt=; Path=/auth; Max-Age=0" in result.stdout, shown


def test_the_printed_walkthrough_runs_as_printed(
    strict_stack: RunningStack, tmp_path: Path
) -> None:
    script = printed_walkthrough(strict_stack)
    assert "sleep" not in script  # REFRESH_REUSE_GRACE_SECONDS=0 on this stack
    assert "_dev/clock" not in script  # and no grace window to move past
    assert_walked_through(run_walkthrough(strict_stack, tmp_path))


def test_with_a_grace_window_the_walkthrough_moves_the_clock_past_it(
    stack: RunningStack, tmp_path: Path
) -> None:
    """The README's walkthrough on the default settings (a 30 s grace window): with
    DEV_CLOCK_CONTROL=1 the printed step 4 moves the stack's clock instead of sleeping."""
    script = printed_walkthrough(stack)
    assert "sleep" not in script
    assert "'{\"advance_seconds\": 31}' $API/_dev/clock" in script
    assert_walked_through(run_walkthrough(stack, tmp_path))
