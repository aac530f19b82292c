"""The operator CLI (``python -m devserver.ctl``, i.e. `make ctl`) against the running stack,
checked through the HTTP API like a client would. The key commands (rotate-keys, revoke-key,
list-keys, show-jwks) are exercised in test_rotation.py, on a stack with short key caches.
Every error line is ``tokenctl: <code>: <message>``; the exit codes are tokenctl's (1 failed,
2 bad usage), which `make ctl` prints before make's own 2."""

from __future__ import annotations

import json
import re
import secrets
import threading
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN_USER, DEMO_PASSWORD, DEMO_USER, RunningStack
from tests.e2e.test_flows import claims_of, logged_in
from tests.e2e.test_login_limits import WINDOW_SECONDS, login_from

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
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert missing.stderr.startswith("tokenctl: user_not_found: ")
    assert missing.stdout == ""

    duplicate = stack.ctl("create-user", DEMO_USER, "--password", "whatever")
    assert duplicate.returncode != 0
    assert "user_exists" in duplicate.stderr
    assert "whatever" not in duplicate.stderr

    usage = stack.ctl("no-such-command")
    assert usage.returncode == 2
    assert usage.stderr.splitlines()[-1].startswith("tokenctl: usage_error: ")


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


ERROR_LINE = re.compile(r"tokenctl: [a-z][a-z_]*: [^\n]+\n")


def test_passwords_are_set_from_stdin_and_at_least_eight_characters(stack: RunningStack) -> None:
    name = f"erin-{secrets.token_hex(3)}"
    short = stack.ctl("create-user", name, stdin="seven c\n")
    assert (short.returncode, short.stdout) == (1, "")
    assert short.stderr == (
        "tokenctl: password_too_short: password must be at least 8 characters\n"
    )
    first_password, second_password = "erin's first passphrase", "erin's second passphrase"
    created = ctl_json(stack, "create-user", name, stdin=first_password + "\n")
    client, _ = logged_in(stack, name, first_password)

    assert ERROR_LINE.fullmatch(stack.ctl("set-password", name, stdin="short\n").stderr)
    assert client.refresh().status == 200  # a refused change ends nothing
    changed = ctl_json(stack, "set-password", name, stdin=second_password + "\n")
    assert changed["sessions_revoked"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", changed["password_changed_at"])
    assert client.refresh().status == 401
    assert stack.client().login(name, first_password).status == 401
    # A short password at login is a wrong password: the same 401, never a 400.
    wrong, short_guess = (stack.client().login(name, p) for p in ("wrong password", "short"))
    assert (wrong.status, short_guess.status) == (401, 401)
    assert wrong.json() == short_guess.json()
    logged_in(stack, name, second_password)

    ctl_json(stack, "disable-user", created["user_id"])
    assert stack.client().login(name, second_password).status == 401
    enabled = ctl_json(stack, "enable-user", name)
    assert (enabled["disabled"], enabled["was_disabled"]) == (False, True)
    logged_in(stack, name, second_password)


def test_list_users_pages_and_never_shows_a_hash(stack: RunningStack) -> None:
    names: list[str] = []
    page = ctl_json(stack, "list-users", "--limit", "1")
    for _ in range(1000):
        assert len(page["users"]) <= 1
        names.extend(user["username"] for user in page["users"])
        if page["next_cursor"] is None:
            break
        page = ctl_json(stack, "list-users", "--limit", "1", "--cursor", page["next_cursor"])
    assert {DEMO_USER, ADMIN_USER} <= set(names)
    assert len(names) == len(set(names))
    whole = stack.ctl("list-users", "--limit", "1000")
    assert "$argon2" not in whole.stdout
    assert "password_hash" not in whole.stdout


def test_unlock_reopens_a_usernames_and_an_addresses_login_window(
    strict_stack: RunningStack,
) -> None:
    """On the stack with the default login limits (10 per username in five minutes)."""
    strict_stack.fresh_window(WINDOW_SECONDS, needed=120)
    name, password = f"locked-{secrets.token_hex(3)}", f"right-{secrets.token_hex(8)}"
    created = strict_stack.ctl("create-user", name, "--password", password)
    assert created.returncode == 0, created.stderr
    source = "127.0.2.9"

    def attempt(guess: str) -> int:
        return login_from(strict_stack, source, name, guess, threading.Barrier(1))[0]

    assert [attempt(f"guess-{n}") for n in range(10)] == [401] * 10
    assert attempt(password) == 429
    unlocked = strict_stack.ctl("unlock", "--user", name, "--ip", source)
    assert unlocked.returncode == 0, unlocked.stderr
    cleared = json.loads(unlocked.stdout)["cleared"]
    assert cleared == [
        {"scope": "login_user", "key": name, "counters_removed": 1},
        {"scope": "login_ip", "key": source, "counters_removed": 1},
    ]
    assert attempt(password) == 200

    usage = strict_stack.ctl("unlock")
    assert usage.returncode == 2
    assert ERROR_LINE.fullmatch(usage.stderr)


def test_verify_checks_what_decode_only_shows(stack: RunningStack) -> None:
    _, grant = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    token = grant["access_token"]
    verified = ctl_json(stack, "verify", stdin=token + "\n")
    assert verified["verified"] is True
    assert verified["claims"]["sid"] == grant["session_id"]
    assert verified["kid"] == verified["header"]["kid"]
    decoded = ctl_json(stack, "decode", token)
    assert (decoded["claims"], decoded["verified"]) == (verified["claims"], False)

    header, payload, signature = token.split(".")
    _, other = logged_in(stack, DEMO_USER, DEMO_PASSWORD)
    forged = ".".join([header, payload, other["access_token"].rsplit(".", 1)[1]])
    refused = stack.ctl("verify", forged)
    assert refused.returncode == 1
    assert refused.stderr.startswith("tokenctl: invalid_signature: ")
    assert signature not in refused.stderr
    assert ERROR_LINE.fullmatch(refused.stderr)
