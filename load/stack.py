"""The local stack the run drives: ``python -m devserver`` in a subprocess on free ports.

Besides the API the run uses the stack's development routes (``/_dev/clock``: time is moved,
never waited for; ``/_dev/faults``: devserver.faults), ``python -m devserver.ctl`` (what
`make ctl` runs) for the key rotation, and a DynamoDB client of its own to read the table at
the end. The CLI and that client carry devserver.faults' exemption (``AWS_SDK_UA_APP_ID``,
``user_agent_appid``), so the chaos is reserved for the functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from devserver.faults import EXEMPT_APP_ID
from devserver.ready import wait_until_serving
from devserver.settings import REGION

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
START_DEADLINE_SECONDS: Final = 300  # seeding hundreds of users runs Argon2 for each
STOP_DEADLINE_SECONDS: Final = 30
CTL_TIMEOUT_SECONDS: Final = 120
CONTROL_TIMEOUT_SECONDS: Final = 30


class StackError(Exception):
    """The stack could not be started or driven (not an invariant violation: the run stops)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hermetic_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without anything that could reach AWS or set the stack's
    settings behind the run's back (as the e2e stacks do), plus ``settings``."""
    from tokencore.config import Settings

    owned = {field.name.upper() for field in dataclasses.fields(Settings)}
    owned |= {"PORT", "AWS_PORT", "SEED_USERS"}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_", "DEV_")) and name not in owned
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


class LoadStack:
    def __init__(self, settings: Mapping[str, str], log_dir: Path, *, port: int, aws_port: int):
        self.port, self.aws_port = port, aws_port
        self.env = hermetic_environment(
            {
                **settings,
                "PORT": str(self.port),
                "AWS_PORT": str(self.aws_port),
                "DEV_CLOCK_CONTROL": "1",
                "DEV_FAULT_CONTROL": "1",
            }
        )
        self.log_dir = log_dir
        self.stdout = log_dir / "stdout.log"
        self.stderr = log_dir / "stderr.log"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devserver"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
            )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        outcome = wait_until_serving(self.process, self.api_url, START_DEADLINE_SECONDS)
        if outcome == "exited":
            raise StackError(f"the local stack exited while starting:\n{self.log_tail()}")
        if outcome == "late":
            raise StackError(f"the local stack was not ready within {START_DEADLINE_SECONDS} s")

    def log_tail(self, chars: int = 3000) -> str:
        return self.stderr.read_text(errors="replace")[-chars:]

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; the exit code (killed after a deadline: -9)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    # --- development routes ---------------------------------------------------------------------

    def _control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.api_url + path,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback
                request, timeout=CONTROL_TIMEOUT_SECONDS
            ) as answer:
                document: dict[str, Any] = json.load(answer)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise StackError(f"{path}: {type(exc).__name__}") from exc
        return document

    def clock(self) -> tuple[float, float]:
        """The stack's time and its offset from the wall clock."""
        document = self._control("/_dev/clock")
        return float(document["now"]), float(document["offset"])

    def advance(self, seconds: float) -> float:
        """Move the stack's clock forward; returns the new offset."""
        return float(self._control("/_dev/clock", {"advance_seconds": seconds})["offset"])

    def faults(self, plan: dict[str, Any] | None = None) -> dict[str, Any]:
        """The fault plan and counters; with ``plan``, set it first."""
        return self._control("/_dev/faults", plan)

    # --- the operator CLI and the table ------------------------------------------------------

    def ctl(self, *args: str) -> dict[str, Any]:
        """``make ctl ARGS="..."`` against this stack, exempt from the faults."""
        result = subprocess.run(
            [sys.executable, "-m", "devserver.ctl", *args],
            cwd=REPO_ROOT,
            env={**self.env, "AWS_SDK_UA_APP_ID": EXEMPT_APP_ID},
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"tokenctl {args[0]} failed: {result.stderr.strip()[-500:]}")
        try:
            document: dict[str, Any] = json.loads(result.stdout)
        except ValueError as exc:
            raise StackError(f"tokenctl {args[0]} printed no JSON") from exc
        return document

    def table_items(self, table_name: str) -> list[dict[str, Any]]:
        """Every item of the table (a Scan through the exempt client)."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{self.aws_port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(user_agent_appid=EXEMPT_APP_ID, retries={"total_max_attempts": 3}),
        )
        items: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
        while True:
            page = client.scan(**arguments)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
