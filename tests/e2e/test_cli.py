"""The operator CLI (``python -m devserver.ctl``, i.e. `make ctl`) against the running stack,
checked through the HTTP API like a client would. The key commands (rotate-keys, revoke-key,
list-keys, show-jwks) are exercised in test_rotation.py, on a stack with short key caches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import DEMO_PASSWORD, DEMO_USER, RunningStack
from tests.e2e.test_flows import claims_of, logged_in

pytestmark = pytest.mark.e2e


def ctl_json(stack: RunningStack, *args: str, stdin: str | None = None) -> Any:
    result = stack.ctl(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_create_user_then_manage_their_sessions(stack: RunningStack) -> None:
    password = "a passphrase with spaces"  # test-only
    created = ctl_json(
        stack,
        "create-user",
        "carol",
        "--email",
        "carol@example.com",
        "--roles",
        "user",
        stdin=password + "\n",
    )
    assert created["username"] == "carol"
    assert created["roles"] == ["user"]
    assert password not in json.dumps(created)

    client, grant = logged_in(stack, "carol", password)
    assert claims_of(grant["access_token"])["sub"] == created["user_id"]

    changed = ctl_json(stack, "set-roles", "carol", "--roles", "admin,user")
    assert changed["roles"] == ["admin", "user"]
    refreshed = client.refresh()
    assert refreshed.status == 200
    assert claims_of(refreshed.json()["access_token"])["roles"] == ["admin", "user"]

    listing = ctl_json(stack, "list-sessions", "carol")
    assert [s["session_id"] for s in listing["sessions"]] == [grant["session_id"]]
    by_id = ctl_json(stack, "list-sessions", created["user_id"])
    assert by_id == listing

    revoked = ctl_json(stack, "revoke-session", grant["session_id"])
    assert revoked["revoked"] is True
    assert revoked["already_revoked"] is False
    assert client.refresh().status == 401
    assert ctl_json(stack, "list-sessions", "carol")["sessions"] == []

    again = ctl_json(stack, "revoke-session", grant["session_id"])
    assert again["already_revoked"] is True


def test_revoke_user_and_disable_user(stack: RunningStack) -> None:
    ctl_json(stack, "create-user", "dave", "--password", "dave-password")
    first, _ = logged_in(stack, "dave", "dave-password")
    second, _ = logged_in(stack, "dave", "dave-password")
    assert ctl_json(stack, "revoke-user", "dave")["sessions_revoked"] == 2
    assert first.refresh().status == 401
    assert second.refresh().status == 401

    third, _ = logged_in(stack, "dave", "dave-password")
    disabled = ctl_json(stack, "disable-user", "dave")
    assert disabled["disabled"] is True
    assert disabled["sessions_revoked"] == 1
    assert third.refresh().status == 401
    assert stack.client().login("dave", "dave-password").status == 401


def test_errors_are_one_line_and_non_zero(stack: RunningStack) -> None:
    missing = stack.ctl("list-sessions", "nobody-here")
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert missing.stderr.startswith("tokenctl: ")
    assert missing.stdout == ""

    duplicate = stack.ctl("create-user", DEMO_USER, "--password", "whatever")
    assert duplicate.returncode != 0
    assert "user_exists" in duplicate.stderr
    assert "whatever" not in duplicate.stderr

    usage = stack.ctl("no-such-command")
    assert usage.returncode == 2


def test_decode_is_marked_unverified_and_never_echoes_the_token(stack: RunningStack) -> None:
    _, grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    token = grant["access_token"]
    result = stack.ctl("decode", stdin=token + "\n")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["verified"] is False
    assert shown["warning"].startswith("UNVERIFIED")
    assert "UNVERIFIED" in result.stderr
    assert shown["claims"]["sid"] == grant["session_id"]
    assert shown["header"]["typ"] == "at+jwt"
    signature = token.rsplit(".", 1)[1]
    assert signature not in result.stdout
    assert signature not in result.stderr

    garbage = stack.ctl("decode", "definitely-not-a-token")
    assert garbage.returncode != 0
    assert "definitely-not-a-token" not in garbage.stderr
