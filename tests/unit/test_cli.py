"""tokenctl over the in-memory backends: the account, rate-limit and token commands, its error
lines and exit codes, and values that start with "-". (The key commands need Secrets Manager:
tests/functional/test_tokenctl.py runs them on moto; tests/e2e/test_cli.py runs everything
through `make ctl`'s path against the local stack.)"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.clock import ManualClock
from tokencore import cli
from tokencore.audit import hash_identifier
from tokencore.config import Settings
from tokencore.errors import InvalidCredentials, RateLimited
from tokencore.keys import KeySet, StaticKeySource, generate_key
from tokencore.keys.keyring import KeyRing
from tokencore.ratelimit import InMemoryRateLimiter
from tokencore.runtime import Parts, Runtime
from tokencore.service import LoginRequest, TokenGrant
from tokencore.sessions import InMemorySessionStore
from tokencore.users import InMemoryUserStore

PASSWORD = "correct horse battery staple"  # test-only
NEW_PASSWORD = "a new passphrase for alice"  # test-only
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# An error line: the program, a short code, a message; nothing else on stderr.
ERROR_LINE = re.compile(r"tokenctl: [a-z][a-z_]*: [^\n]+\n")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@dataclass
class World:
    runtime: Runtime
    clock: ManualClock
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def ctl(self, *argv: str, stdin: str | None = None) -> Ran:
        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin or ""))
        code = cli.main(list(argv), clock=self.clock, runtime=self.runtime)
        out, err = self.capsys.readouterr()
        return Ran(code, out, err)

    def login(self, username: str, password: str, source_ip: str = "198.51.100.7") -> TokenGrant:
        return self.runtime.auth.login(LoginRequest(username, password, source_ip=source_ip))


def _ring(keys: KeySet, clock: ManualClock) -> KeyRing:
    source = StaticKeySource(keys.verification_keys())
    return KeyRing(source, clock, cache_ttl_seconds=300, refetch_min_interval_seconds=10)


@pytest.fixture
def make_world(
    clock: ManualClock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., World]:
    def build(**env: str) -> World:
        settings = Settings.from_env({"TOKEN_ISSUER": "https://auth.example.com", **env})
        access = KeySet([generate_key(settings.access_token_alg)], "access")
        refresh = KeySet([generate_key("HS256")], "refresh")
        parts = Parts(
            sessions=InMemorySessionStore(settings, clock),
            user_store=InMemoryUserStore(),
            rate_limiter=InMemoryRateLimiter(clock),
            password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
            public_key_source=StaticKeySource(access.verification_keys()),
            access_signer=access.signer(),
            refresh_signer=refresh.signer(),
            access_keys=_ring(access, clock),
            refresh_keys=_ring(refresh, clock),
        )
        runtime = Runtime(settings, clock, parts)
        runtime.users.create_user("alice", PASSWORD, roles=["user"])
        return World(runtime, clock, capsys, monkeypatch)

    return build


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def assert_one_error_line(ran: Ran, code: str, exit_code: int = 1) -> str:
    assert ran.code == exit_code
    assert ran.out == ""
    assert ERROR_LINE.fullmatch(ran.err), ran.err
    assert ran.err.startswith(f"tokenctl: {code}: ")
    return ran.err


# --- passwords --------------------------------------------------------------------------------


def test_create_user_takes_one_line_of_stdin_and_prints_iso_times(world: World) -> None:
    created = world.ctl("create-user", "bob", "--roles", "user", stdin=PASSWORD + "\n").json()
    assert created["username"] == "bob"
    assert created["created_at"] == created["password_changed_at"] == "2027-01-15T08:00:00Z"
    assert world.login("bob", PASSWORD).session_id


def test_a_short_password_is_refused_with_a_clear_message(
    world: World, make_world: Callable[..., World]
) -> None:
    refused = world.ctl("create-user", "bob", stdin="7 chars\n")
    assert refused.err == "tokenctl: password_too_short: password must be at least 8 characters\n"
    assert refused.code == 1
    assert "7 chars" not in refused.err
    assert world.ctl("list-sessions", "bob").err.startswith("tokenctl: user_not_found: ")

    strict = make_world(PASSWORD_MIN_LENGTH="12")
    assert_one_error_line(
        strict.ctl("create-user", "bob", "--password", "elevenchars"), "password_too_short"
    )
    assert strict.ctl("create-user", "bob", "--password", "twelve chars").code == 0


def test_set_password_from_stdin_ends_every_session(world: World) -> None:
    first, second = world.login("alice", PASSWORD), world.login("alice", PASSWORD)
    world.clock.advance(90)
    changed = world.ctl("set-password", "alice", stdin=NEW_PASSWORD + "\n").json()
    assert changed["sessions_revoked"] == 2
    assert changed["password_changed_at"] == "2027-01-15T08:01:30Z"
    assert NEW_PASSWORD not in json.dumps(changed)
    for grant in (first, second):
        assert (
            world.runtime.sessions.get_session(grant.session_id, active_only=False).status
            == "revoked"
        )
    with pytest.raises(InvalidCredentials):
        world.login("alice", PASSWORD)
    assert world.login("alice", NEW_PASSWORD).session_id


def test_set_password_under_the_minimum_changes_nothing(world: World) -> None:
    grant = world.login("alice", PASSWORD)
    before = world.runtime.user_store.get_by_username("alice")
    assert_one_error_line(world.ctl("set-password", "alice", stdin="short\n"), "password_too_short")
    assert world.runtime.user_store.get_by_username("alice") == before
    assert world.runtime.sessions.get_session(grant.session_id).status == "active"
    assert_one_error_line(world.ctl("set-password", "alice", stdin="\n"), "no_password")
    assert_one_error_line(world.ctl("set-password", "nobody", stdin=PASSWORD), "user_not_found")


def test_enable_user_lets_a_disabled_user_log_in_again(world: World) -> None:
    grant = world.login("alice", PASSWORD)
    assert world.ctl("disable-user", "alice").json()["sessions_revoked"] == 1
    with pytest.raises(InvalidCredentials):
        world.login("alice", PASSWORD)
    enabled = world.ctl("enable-user", "alice").json()
    assert (enabled["disabled"], enabled["was_disabled"]) == (False, True)
    assert world.login("alice", PASSWORD).session_id
    # The sessions disabling ended stay ended; enabling twice changes nothing.
    assert (
        world.runtime.sessions.get_session(grant.session_id, active_only=False).status == "revoked"
    )
    assert world.ctl("enable-user", "alice").json()["was_disabled"] is False


# --- list-users -------------------------------------------------------------------------------


def test_list_users_pages_through_everyone_without_a_hash(world: World) -> None:
    for n in range(4):
        world.ctl("create-user", f"user{n}", "--password", PASSWORD).json()
    seen: list[dict[str, Any]] = []
    page = world.ctl("list-users", "--limit", "2").json()
    while True:
        assert len(page["users"]) <= 2
        seen.extend(page["users"])
        if page["next_cursor"] is None:
            break
        page = world.ctl("list-users", "--limit", "2", "--cursor", page["next_cursor"]).json()
    assert sorted(user["username"] for user in seen) == ["alice", *(f"user{n}" for n in range(4))]
    for user in seen:
        assert set(user) == {
            "user_id",
            "username",
            "email",
            "roles",
            "disabled",
            "created_at",
            "password_changed_at",
        }
        assert ISO_UTC.fullmatch(user["created_at"])
    listing = world.ctl("list-users").out
    assert "$argon2" not in listing
    assert "hash" not in listing


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_list_users_refuses_a_bad_page_size(world: World, limit: str) -> None:
    ran = world.ctl("list-users", "--limit", limit)
    assert ran.code == 2
    assert ran.err.splitlines()[-1].startswith("tokenctl: usage_error: ")


def test_list_users_refuses_a_cursor_it_never_gave(world: World) -> None:
    assert_one_error_line(world.ctl("list-users", "--cursor", "not a cursor"), "invalid_request")


# --- unlock -----------------------------------------------------------------------------------


def _lock_out(world: World, username: str, source_ip: str) -> None:
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            world.login(username, "a wrong guess", source_ip)
    with pytest.raises(RateLimited):
        world.login(username, PASSWORD, source_ip)


def test_unlock_clears_a_usernames_login_window(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(LOGIN_RATE_LIMIT="3/300")
    _lock_out(world, "alice", "198.51.100.7")
    with caplog.at_level(logging.INFO, logger="tokencore.audit"):
        cleared = world.ctl("unlock", "--user", "ALICE").json()  # normalized, as at login
    (event,) = [r for r in caplog.records if getattr(r, "security_event", None)]
    fields = event.__dict__  # the extra= fields of the record
    assert (fields["security_event"], fields["scope"], fields["count"]) == (
        "rate_limit_cleared",
        "login_user",
        1,
    )
    assert fields["user"] == hash_identifier("alice")  # as login_rate_limited labels it
    assert "alice" not in caplog.text.lower()
    assert cleared == {"cleared": [{"scope": "login_user", "key": "ALICE", "counters_removed": 1}]}
    assert world.login("alice", PASSWORD).session_id
    assert world.ctl("unlock", "--user", "alice").json()["cleared"][0]["counters_removed"] == 1


def test_unlock_clears_an_addresses_window_however_it_is_spelled(
    make_world: Callable[..., World],
) -> None:
    world = make_world(LOGIN_IP_RATE_LIMIT="3/300")
    world.runtime.users.create_user("bob", PASSWORD)
    _lock_out(world, "alice", "2001:db8::1")
    with pytest.raises(RateLimited):
        world.login("bob", PASSWORD, "2001:db8::1")  # the address is full, whoever tries
    assert world.login("bob", PASSWORD, "2001:db8::2").session_id
    cleared = world.ctl("unlock", "--ip", "2001:DB8:0::1").json()["cleared"]
    assert cleared == [{"scope": "login_ip", "key": "2001:db8::1", "counters_removed": 1}]
    assert world.login("bob", PASSWORD, "2001:db8::1").session_id


def test_unlock_needs_a_user_or_a_valid_address(world: World) -> None:
    assert_one_error_line(world.ctl("unlock"), "usage_error", exit_code=2)
    assert_one_error_line(world.ctl("unlock", "--ip", "300.1.1.1"), "invalid_argument")
    both = world.ctl("unlock", "--user", "alice", "--ip", "198.51.100.7").json()["cleared"]
    assert [entry["scope"] for entry in both] == ["login_user", "login_ip"]


# --- verify and decode --------------------------------------------------------------------------


def test_verify_checks_the_token_against_the_published_keys(world: World) -> None:
    grant = world.login("alice", PASSWORD)
    shown = world.ctl("verify", grant.access_token).json()
    assert shown["verified"] is True
    assert shown["kid"] == shown["header"]["kid"]
    assert shown["claims"]["sid"] == grant.session_id
    assert ISO_UTC.fullmatch(shown["times"]["exp"])
    assert "NOT the session" in shown["checked"]
    assert world.ctl("verify", stdin=grant.access_token + "\n").json() == shown
    signature = grant.access_token.rsplit(".", 1)[1]
    assert signature not in world.ctl("verify", grant.access_token).out

    world.clock.advance(900 + 31)  # past expiry and the leeway
    expired = assert_one_error_line(world.ctl("verify", grant.access_token), "expired_token")
    assert signature not in expired


def test_verify_refuses_what_the_published_keys_did_not_sign(
    world: World, make_world: Callable[..., World]
) -> None:
    elsewhere = make_world().login("alice", PASSWORD)  # another deployment's keys
    assert_one_error_line(world.ctl("verify", elsewhere.access_token), "unknown_kid")
    grant, other = world.login("alice", PASSWORD), world.login("alice", PASSWORD)
    header, payload, _ = grant.access_token.split(".")
    forged = ".".join([header, payload, other.access_token.rsplit(".", 1)[1]])
    assert_one_error_line(world.ctl("verify", forged), "invalid_signature")
    # A refresh token is the issuer's alone: its HMAC key is not published.
    refresh = grant.refresh_token
    assert refresh is not None
    assert world.ctl("verify", refresh).code == 1


def test_decode_and_verify_take_a_token_that_starts_with_a_dash(world: World) -> None:
    for command in ("decode", "verify"):
        ran = world.ctl(command, "-not.a.token")
        assert_one_error_line(ran, "malformed_token")
        assert "-not" not in ran.err


# --- values that start with "-", usage errors, error lines -------------------------------------


def test_a_username_that_starts_with_a_dash_is_a_value(world: World) -> None:
    created = world.ctl("create-user", "-dash", "--password", "-starts-with-a-dash").json()
    assert created["username"] == "-dash"
    assert world.login("-dash", "-starts-with-a-dash").session_id
    assert world.ctl("list-sessions", "-dash").json()["user_id"] == created["user_id"]
    assert world.ctl("set-roles", "-dash", "--roles", "admin").json()["roles"] == ["admin"]
    assert world.ctl("set-roles", "--roles", "", "--", "-dash").json()["roles"] == []


def test_revoke_key_takes_a_kid_that_starts_with_a_dash() -> None:
    parser = cli.build_parser()
    kid = "-" + "A" * 42  # as an RFC 7638 thumbprint in base64url is, one time in 64
    for argv in (["revoke-key", kid], ["revoke-key", "--", kid]):
        args = parser.parse_args(cli._values_after_options(parser, argv))
        assert (args.command, args.kid) == ("revoke-key", kid)
    assert cli._values_after_options(parser, ["rotate-keys", "--refresh", "--force"]) == [
        "rotate-keys",
        "--refresh",
        "--force",
    ]


def test_usage_errors_have_a_code_exit_2_and_echo_no_argument(world: World) -> None:
    typed = "a-password-typed-in-the-wrong-place"
    ran = world.ctl("create-user", "bob", typed)
    assert ran.code == 2
    assert ran.err.splitlines()[-1] == (
        "tokenctl: usage_error: unrecognized arguments (not shown: one may be a secret)"
    )
    assert typed not in ran.err
    assert world.ctl("no-such-command").code == 2
    assert world.ctl("list-keys", "--forse").code == 2
    assert (
        world.ctl("set-roles", "alice").err.splitlines()[-1].startswith("tokenctl: usage_error: ")
    )


def test_an_unexpected_failure_is_one_line_with_a_code(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("a value that must not be printed")

    monkeypatch.setattr(world.runtime.users, "enable_user", broken)
    ran = world.ctl("enable-user", "alice")
    assert ran.err == "tokenctl: internal_error: unexpected KeyError\n"


def test_instants_in_reports_become_iso_8601_utc() -> None:
    report = {
        "promoted": False,
        "deferred_until": 1_800_000_300,
        "bound_seconds": 300,
        "keys": [{"kid": "k", "published_at": 1_800_000_000.5, "retired_at": None}],
    }
    assert cli._with_iso_instants(report) == {
        "promoted": False,
        "deferred_until": "2027-01-15T08:05:00Z",
        "bound_seconds": 300,
        "keys": [{"kid": "k", "published_at": "2027-01-15T08:00:00Z", "retired_at": None}],
    }


def test_make_ctl_without_a_stack_fails_with_a_code_and_still_helps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from devserver import ctl

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_PORT", str(port))
    capsys.readouterr()
    assert ctl.main(["unlock", "--user", "alice"]) == 1
    err = capsys.readouterr().err
    assert ERROR_LINE.fullmatch(err), err
    assert err.startswith("tokenctl: local_stack_error: nothing listens on ")
    assert ctl.main(["unlock", "--help"]) == 0
    assert "--ip" in capsys.readouterr().out


def test_security_events_reach_stderr_as_json_with_their_fields(world: World) -> None:
    """An operator's record: the flows' security events, hashed ids, one JSON line each."""
    world.ctl("create-user", "bob", stdin="a long enough password\n")
    ran = world.ctl("set-roles", "bob", "--roles", "user,analyst")
    assert ran.code == 0, ran.err
    events = [json.loads(line) for line in ran.err.splitlines() if line.startswith("{")]
    changed = [event for event in events if event.get("security_event") == "roles_changed"]
    assert len(changed) == 1, ran.err
    assert changed[0]["user_id_hash"]
    assert "bob" not in ran.err  # ids are hashed, never a name
    # An INFO-level event comes out too (Python's last-resort handler drops those).
    unlocked = world.ctl("unlock", "--user", "bob")
    assert any(
        json.loads(line).get("security_event") == "rate_limit_cleared"
        for line in unlocked.err.splitlines()
        if line.startswith("{")
    ), unlocked.err
