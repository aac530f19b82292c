"""A user's own API behind the authorizer, as the README tells a new user to build it:
examples/protected_api served by the local stack next to the main API (DEV_EXAMPLES=1, its
template importing the main template's exports), a login on the main API, then the example's
routes; and the token verified by another service with examples/verify (PyJWT, aws-jwt-verify).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.client import Client, Response
from tests.e2e.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    ANALYST_PASSWORD,
    ANALYST_USER,
    DEMO_PASSWORD,
    DEMO_USER,
    REPO_ROOT,
    RunningStack,
)

VERIFY_DIR = REPO_ROOT / "examples" / "verify"
VERIFY_TIMEOUT_SECONDS = 120  # a hang bound


def signed_in(stack: RunningStack, username: str, password: str) -> tuple[Client, str]:
    client = stack.client()
    answer = client.login(username, password)
    assert answer.status == 200, answer.body
    return client, str(answer.json()["access_token"])


def get(client: Client, token: str, path: str) -> Response:
    return client.request("GET", path, bearer=token)


def test_the_example_api_is_served_behind_the_exported_authorizer(stack: RunningStack) -> None:
    client, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    me = get(client, token, "/me").json()
    hello = get(client, token, "/example/hello")
    assert hello.status == 200, hello.body
    body = hello.json()
    assert body["user_id"] == me["user_id"]
    assert body["session_id"] == me["session_id"]
    assert body["roles"] == ["user"]
    assert body["payload"] == "2.0"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a%40b.com", "a@b.com"),
        ("my%20doc.txt", "my doc.txt"),
        ("caf%C3%A9", "café"),
    ],
)
def test_percent_encoded_paths_reach_the_function(
    stack: RunningStack, raw: str, decoded: str
) -> None:
    client, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    answer = get(client, token, f"/example/users/{raw}")
    assert answer.status == 200, answer.body
    assert answer.json()["path_parameters"] == {"email": decoded}


def test_route_roles_from_the_environment_guard_the_example(stack: RunningStack) -> None:
    client, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    refused = get(client, token, "/example/reports/q1")
    assert (refused.status, refused.json()) == (403, {"message": "Forbidden"})
    analyst, analyst_token = signed_in(stack, ANALYST_USER, ANALYST_PASSWORD)
    allowed = get(analyst, analyst_token, "/example/reports/2027/q1")
    assert allowed.status == 200, allowed.body
    assert allowed.json()["path_parameters"] == {"proxy": "2027/q1"}


def test_an_encoded_path_that_could_reach_the_admin_tree_is_refused_only_to_non_admins(
    stack: RunningStack,
) -> None:
    path = "/example/users/..%2F..%2Fadmin"
    client, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    assert get(client, token, path).status == 403
    admin, admin_token = signed_in(stack, ADMIN_USER, ADMIN_PASSWORD)
    answer = get(admin, admin_token, path)
    assert answer.status == 200, answer.body
    assert answer.json()["path_parameters"] == {"email": "../../admin"}


def test_what_clients_get_through_the_gateway(stack: RunningStack) -> None:
    # No token: API Gateway's own 401, before the authorizer runs; no WWW-Authenticate.
    anonymous = stack.client().request("GET", "/example/hello")
    assert (anonymous.status, anonymous.json()) == (401, {"message": "Unauthorized"})
    assert anonymous.header("WWW-Authenticate") is None
    # A bad token and a refused route look the same on HTTP API: 403 Forbidden.
    client, _ = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    forged = client.request("GET", "/example/hello", bearer="not.a.token")
    assert (forged.status, forged.json()) == (403, {"message": "Forbidden"})
    assert forged.header("WWW-Authenticate") is None
    assert forged.header("Retry-After") is None


def run_verifier(
    command: list[str], stack: RunningStack, token: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, stack.base_url, "tokencore-api"],
        input=token,
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_SECONDS,
        check=False,
    )


def test_another_service_verifies_the_token_with_pyjwt(stack: RunningStack) -> None:
    _, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    script = str(VERIFY_DIR / "python" / "verify.py")
    verified = run_verifier([sys.executable, script], stack, token)
    assert verified.returncode == 0, verified.stderr
    claims = json.loads(verified.stdout)
    assert claims["iss"] == stack.base_url
    assert claims["token_use"] == "access"
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused = run_verifier([sys.executable, script], stack, tampered)
    assert refused.returncode == 1
    assert token not in refused.stderr


def test_another_service_verifies_the_token_with_aws_jwt_verify(stack: RunningStack) -> None:
    node = shutil.which("node")
    module = VERIFY_DIR / "node" / "node_modules" / "aws-jwt-verify"
    if node is None or not Path(module).is_dir():
        pytest.skip("needs node and `npm ci` in examples/verify/node (make test does both)")
    _, token = signed_in(stack, DEMO_USER, DEMO_PASSWORD)
    script = str(VERIFY_DIR / "node" / "verify.mjs")
    verified = run_verifier([node, script], stack, token)
    assert verified.returncode == 0, verified.stderr
    assert (
        json.loads(verified.stdout)["sub"]
        == json.loads(
            run_verifier(
                [sys.executable, str(VERIFY_DIR / "python" / "verify.py")], stack, token
            ).stdout
        )["sub"]
    )
    refused = run_verifier([node, script], stack, token[:-4] + "AAAA")
    assert refused.returncode == 1
