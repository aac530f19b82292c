"""The authorizer's cold start as template.yaml deploys it, against the local stack's AWS
endpoint: ``PUBLIC_JWKS`` empty, so the first request reads the public JWKS parameter, and
nothing on the way may load boto3's client stack (issue 16; ``make bench`` budget 3b measures
the same cold start's time).

A fresh interpreter gets exactly the environment the template gives the authorizer function
(devserver's reading of template.yaml, as the stack's own containers get it) plus what Lambda
adds (endpoint, credentials, region), and answers a real HTTP API event for a token the stack
issued.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from devserver.settings import aws_environment, developer_settings, ports_from
from devserver.stack import LocalStack
from devserver.template import load_template
from tests.e2e.conftest import DEMO_PASSWORD, DEMO_USER, REPO_ROOT, RunningStack
from tests.functional.conftest import load_event

# Runs in the fresh interpreter: the stack's clock (the tests may have moved it), then three
# invocations, then which modules got loaded.
_COLD_START = """
import json, os, sys, time
from tokencore.config import Settings
from tokencore.runtime import Runtime, set_runtime

class StackClock:
    def now(self):
        return time.time() + float(os.environ["STACK_CLOCK_OFFSET"])

set_runtime(Runtime(Settings.from_env(), StackClock()))
from functions.authorizer import app
event = json.loads(sys.stdin.read())
answers = [app.lambda_handler(event, None) for _ in range(3)]
loaded = sorted(
    name for name in sys.modules
    if name == "boto3" or name.startswith(("boto3.", "botocore.client", "botocore.session"))
)
print(json.dumps({"answers": answers, "loaded": loaded}))
"""


def test_the_deployed_authorizer_reads_its_keys_without_boto3(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = ports_from(stack.env)
    lambda_environment = aws_environment(ports)
    for name, value in lambda_environment.items():  # for devserver's reading of the stack
        monkeypatch.setenv(name, value)
    local = LocalStack(load_template(), developer_settings(stack.env, ports), create=False)
    function_environment = local.function_environment("AuthorizerFunction")
    assert function_environment.get("PUBLIC_JWKS", "") == ""  # the template's default
    assert function_environment.get("PUBLIC_JWKS_PARAMETER")

    client = stack.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login.body
    event = load_event(
        "authorizer/http-valid.json",
        access_token=login.json()["access_token"],
        fingerprint=client.cookie("__Host-fgp") or "",
        session_id=login.json()["session_id"],
        device_id="",
    )
    offset = stack.clock() - time.time()
    result = subprocess.run(
        [sys.executable, "-c", _COLD_START],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={
            "PATH": stack.env.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": stack.env.get("PYTHONPATH", ""),
            **function_environment,
            **lambda_environment,
            "AWS_REGION": stack.env.get("AWS_REGION") or "us-east-1",
            "STACK_CLOCK_OFFSET": repr(offset),
        },
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [answer["isAuthorized"] for answer in report["answers"]] == [True] * 3
    assert report["loaded"] == []
