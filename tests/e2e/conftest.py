"""The local stack as a client meets it: ``python -m devserver`` in a subprocess on free ports,
driven over HTTP, and ``python -m devserver.ctl`` (what `make ctl` runs) against it.

Two stacks per session, started together: ``stack`` with the template's defaults (plus an
admin from SEED_USERS), and ``strict_stack`` with no refresh grace window and a low refresh
rate limit. Each is stopped with a signal at the end (SIGINT for one, SIGTERM for the other)
and must exit 0 without a traceback. Readiness is bounded polling; nothing else waits.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devserver.ready import wait_until_serving
from tests.e2e.client import Client
from tokencore.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Hang bounds, not speed budgets: a loaded 2-core machine has taken 21 s to start a stack.
START_DEADLINE_SECONDS = 180
STOP_DEADLINE_SECONDS = 30
CTL_TIMEOUT_SECONDS = 120

ADMIN_USER = "root"
ADMIN_PASSWORD = "root-password-for-e2e"  # test-only account of a throwaway local stack
ANALYST_USER = "ana"
ANALYST_PASSWORD = "ana-password-for-e2e"  # test-only account of a throwaway local stack
EXAMPLE_ROUTE_ROLES = "* /admin/*=admin,GET /example/reports/*=analyst|admin"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Whatever the developer running the tests has exported must not change the stacks under test.
_HERMETIC = frozenset(
    {field.name.upper() for field in dataclasses.fields(Settings)}
    | {
        "PORT",
        "AWS_PORT",
        "SEED_USERS",
        "DEV_FUNCTION_CONCURRENCY",
        "DEV_CLOCK_CONTROL",
        "DEV_EXAMPLES",
    }
)


def base_environment(**settings: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_")) and name not in _HERMETIC
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    stdout: Path
    stderr: Path

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.base_url)

    def ctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The operator CLI exactly as `make ctl ARGS="..."` runs it."""
        return subprocess.run(
            [sys.executable, "-m", "devserver.ctl", *args],
            cwd=REPO_ROOT,
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_SECONDS,
            check=False,
        )

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")

    def clock(self) -> float:
        """The stack's time (devserver.clock): the wall clock plus what tests advanced it by."""
        answer = Client(self.base_url).request("GET", "/_dev/clock")
        assert answer.status == 200, answer.body
        return float(answer.json()["now"])

    def advance_clock(self, seconds: float) -> float:
        """Move the stack's clock forward instead of waiting; returns the stack's new time."""
        answer = Client(self.base_url).request(
            "POST", "/_dev/clock", json_body={"advance_seconds": seconds}
        )
        assert answer.status == 200, answer.body
        return float(answer.json()["now"])

    def fresh_window(self, seconds: int, needed: float = 10.0) -> None:
        """Rate limits count in fixed windows aligned on multiples of their length. Unless at
        least ``needed`` seconds of the current window are left, move the stack's clock to the
        start of the next one."""
        left = seconds - self.clock() % seconds
        if left < needed:
            self.advance_clock(left + 0.2)

    def stop(self, signum: int) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"the local stack ignored signal {signum}")
        return int(self.process.returncode)


def launch_stack(directory: Path, **settings: str) -> RunningStack:
    """Start ``python -m devserver`` on free ports, its clock under the tests' control (time
    is advanced, never waited for); ``wait_until_ready`` before using it."""
    env = base_environment(
        PORT=str(free_port()), AWS_PORT=str(free_port()), **{"DEV_CLOCK_CONTROL": "1", **settings}
    )
    stdout, stderr = directory / "stdout.log", directory / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "devserver"], cwd=REPO_ROOT, env=env, stdout=out, stderr=err
        )
    return RunningStack(process, env, stdout, stderr)


def wait_until_ready(stack: RunningStack) -> None:
    outcome = wait_until_serving(stack.process, stack.base_url, START_DEADLINE_SECONDS)
    if outcome == "exited":
        pytest.fail(f"the local stack exited while starting:\n{stack.logs()[-3000:]}")
    if outcome == "late":
        stack.stop(signal.SIGKILL)
        pytest.fail(f"the local stack was not ready within {START_DEADLINE_SECONDS} s")


STRICT_USERS: Mapping[str, str] = {
    "replayer": "replayer-password",
    "hurried": "hurried-password",
}


@pytest.fixture(scope="session")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningStack]]:
    """Both stacks, started together (their start-ups overlap); each fixture below waits for
    its own. Stopped with SIGINT and SIGTERM respectively: both must exit 0, no traceback."""
    stacks = {
        "default": launch_stack(
            tmp_path_factory.mktemp("stack"),
            SEED_USERS=(
                f"{ADMIN_USER}:{ADMIN_PASSWORD}:admin,user;{ANALYST_USER}:{ANALYST_PASSWORD}:analyst"
            ),
            # examples/protected_api served next to the API, with a route-to-role rule of its
            # own (tests/e2e/test_example_api.py).
            DEV_EXAMPLES="1",
            ROUTE_ROLES=EXAMPLE_ROUTE_ROLES,
            # Every authorization of a non-sensitive route skips the session store: what the
            # tests see never depends on sampling luck.
            SESSION_CHECK_SAMPLE_RATE="0",
            # Many logins as one user from one address in one run; limits are tested apart.
            LOGIN_RATE_LIMIT="1000/300",
            LOGIN_IP_RATE_LIMIT="1000/300",
            # And many refreshes as the demo user, by tests that do not expect a 429 (the
            # walkthrough alone refreshes three times): the strict stack tests this limit.
            REFRESH_RATE_LIMIT="1000/60",
        ),
        "strict": launch_stack(
            tmp_path_factory.mktemp("strict"),
            REFRESH_REUSE_GRACE_SECONDS="0",
            REFRESH_RATE_LIMIT="3/60",
            SEED_USERS=";".join(
                f"{name}:{password}:user" for name, password in STRICT_USERS.items()
            ),
        ),
    }
    yield stacks
    failures = []
    for name, signum in (("default", signal.SIGINT), ("strict", signal.SIGTERM)):
        code = stacks[name].stop(signum)
        logs = stacks[name].logs()
        if code != 0 or "Traceback" in logs:
            failures.append(f"{name} stack: exit {code} after signal {signum}\n{logs[-3000:]}")
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def stack(launched: dict[str, RunningStack]) -> RunningStack:
    wait_until_ready(launched["default"])
    return launched["default"]


@pytest.fixture(scope="session")
def strict_stack(launched: dict[str, RunningStack]) -> RunningStack:
    wait_until_ready(launched["strict"])
    return launched["strict"]
