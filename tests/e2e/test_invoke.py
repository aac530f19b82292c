"""`make invoke` and `make events` (devserver/invoke.py, devserver/events.py): every function
that serves a route, invoked the way `sam local invoke` runs it, with no Docker, against the
running local stack, and once against the embedded stack `make invoke` starts on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, RunningStack, base_environment, free_port

pytestmark = pytest.mark.e2e

# One event per function, with what its response must show.
INVOCATIONS = [
    ("AuthorizerFunction", "events/authorizer/http-valid.json"),
    ("IssuerFunction", "events/issuer/login-valid.json"),
    ("IssuerFunction", "events/issuer/jwks.json"),
    ("RefresherFunction", "events/refresher/refresh-cookie.json"),
    ("RevokerFunction", "events/revoker/sessions-list.json"),
    ("MeFunction", "events/me/me.json"),
]


def run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def invoke(env: dict[str, str], function: str, event: str) -> dict[str, Any]:
    done = run("devserver.invoke", function, event, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    response: dict[str, Any] = json.loads(done.stdout)  # stdout is the response alone
    return response


def check(function: str, event: str, response: dict[str, Any]) -> None:
    if function == "AuthorizerFunction":
        assert response["isAuthorized"] is True
        assert response["context"]["roles"] == "user"
    else:
        assert response["statusCode"] == 200, response
    if event.endswith("login-valid.json"):
        assert set(json.loads(response["body"])) >= {"access_token", "session_id"}


@pytest.mark.parametrize(("function", "event"), INVOCATIONS)
def test_make_invoke_runs_each_function_against_the_running_stack(
    stack: RunningStack, function: str, event: str
) -> None:
    check(function, event, invoke(stack.env, function, event))


def test_make_invoke_starts_an_embedded_stack_when_none_runs() -> None:
    env = base_environment(PORT=str(free_port()), AWS_PORT=str(free_port()))
    done = run(
        "devserver.invoke", "AuthorizerFunction", "events/authorizer/http-valid.json", env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["isAuthorized"] is True
    assert "starting an embedded one" in done.stderr


def test_make_invoke_names_an_unknown_function(stack: RunningStack) -> None:
    done = run("devserver.invoke", "NoSuchFunction", "events/me/me.json", env=stack.env)
    assert done.returncode == 1
    assert "no function 'NoSuchFunction'" in done.stderr
    assert done.stdout == ""


def test_make_events_renders_every_event_with_no_placeholder_left(
    stack: RunningStack, tmp_path: Path
) -> None:
    done = run("devserver.events", str(tmp_path), env=stack.env)
    assert done.returncode == 0, done.stderr[-2000:]
    sources = sorted(
        p.relative_to(REPO_ROOT / "events") for p in (REPO_ROOT / "events").rglob("*.json")
    )
    rendered = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert rendered == sources
    for path in tmp_path.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "{{" not in text, path
        json.loads(text)
        assert path.stat().st_mode & 0o077 == 0  # live tokens: the owner's alone
    # A rendered admin event carries an admin's token: the authorizer allows the admin route.
    admin = invoke(
        stack.env, "AuthorizerFunction", str(tmp_path / "authorizer/http-admin-route.json")
    )
    assert admin["isAuthorized"] is True
    assert "admin" in admin["context"]["roles"].split(",")
