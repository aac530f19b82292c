"""What a developer sees when `make dev` cannot start: one line naming the problem."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import REPO_ROOT, base_environment, free_port

pytestmark = pytest.mark.e2e

FAIL_DEADLINE_SECONDS = 120  # a hang bound: the failure itself comes within seconds


def run_devserver(**settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devserver"],
        cwd=REPO_ROOT,
        env=base_environment(**settings),
        capture_output=True,
        text=True,
        timeout=FAIL_DEADLINE_SECONDS,
        check=False,
    )


@pytest.mark.parametrize("variable", ["PORT", "AWS_PORT"])
def test_port_in_use_is_one_line_naming_the_port(variable: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"PORT": str(free_port()), "AWS_PORT": str(free_port())}
        ports[variable] = str(port)
        result = run_devserver(**ports)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0]
    assert variable in lines[0]
    assert "in use" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    result = run_devserver(
        PORT=str(free_port()), AWS_PORT=str(free_port()), REFRESH_RATE_LIMIT="often"
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REFRESH_RATE_LIMIT" in lines[0]
    assert "often" not in lines[0]


def test_a_bad_seed_user_never_echoes_a_password() -> None:
    result = run_devserver(PORT=str(free_port()), AWS_PORT=str(free_port()), SEED_USERS="alice:")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "devserver: SEED_USERS entry 1 must look like name:password[:role,role]"
    ]


def test_a_bad_fault_plan_is_one_line_naming_the_variable() -> None:
    result = run_devserver(
        PORT=str(free_port()), AWS_PORT=str(free_port()), DEV_FAULTS='{"rate": 2}'
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "devserver: DEV_FAULTS: rate must be a number from 0 to 1"
    ]
