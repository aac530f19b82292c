"""tokenctl's key commands on moto's Secrets Manager and SSM: a kid that starts with "-" (an
RFC 7638 thumbprint in base64url does one time in 64), a rotation that is deferred and says
how to force it, and lifecycle times in ISO 8601."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.functional import rotation_support
from tests.functional.conftest import fresh_aws
from tests.functional.rotation_support import KeyStack, make_key_stack
from tokencore import cli
from tokencore.keys import KeyStatus, PrivateKeyEntry, generate_key
from tokencore.runtime import Parts, Runtime

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CACHE = 300  # JWKS_CACHE_TTL_SECONDS's default


def dash_kid_key(alg: str, status: KeyStatus | str = KeyStatus.ACTIVE) -> PrivateKeyEntry:
    """A fresh key whose kid starts with "-" (refresh keys' kids never do: ``rt-...``)."""
    for _ in range(5000):  # about 64 tries expected; 5000 misses: e^-78
        key = generate_key(alg, status)
        if alg == "HS256" or key.kid.startswith("-"):
            return key
    raise AssertionError("no thumbprint started with '-' in 5000 keys")


@dataclass
class Ctl:
    stack: KeyStack
    runtime: Runtime
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv), clock=self.stack.clock, runtime=self.runtime)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Ctl]:
    monkeypatch.setattr(rotation_support, "generate_key", dash_kid_key)
    with fresh_aws():
        stack = make_key_stack()
        runtime = Runtime(stack.settings, stack.clock, Parts(key_rotation=stack.rotation))
        yield Ctl(stack, runtime, capsys)


def test_revoke_key_takes_a_kid_that_starts_with_a_dash(ctl: Ctl) -> None:
    access = ctl.stack.current("access")
    active = access.active.kid
    (following,) = [e.kid for e in access.entries if e.status is KeyStatus.NEXT]
    assert active.startswith("-")
    assert following.startswith("-")

    report = ctl.json("revoke-key", active)
    assert (report["revoked_kid"], report["revoked_status"]) == (active, "active")
    assert report["active_kid"] == following
    assert active not in {key["kid"] for key in ctl.json("show-jwks")["keys"]}
    # "--" still ends the options, as everywhere.
    assert ctl.json("revoke-key", "--", following)["revoked_kid"] == following


def test_rotate_keys_says_when_it_defers_and_how_to_force(ctl: Ctl) -> None:
    ctl.stack.clock.advance(CACHE // 2)  # the next key was published at T0: too recent
    code, out, err = ctl.run("rotate-keys")
    assert code == 0
    report = json.loads(out)
    assert (report["promoted"], report["deferred"]) == (False, True)
    assert report["deferred_until"] == "2027-01-15T08:05:00Z"  # T0 + the cache TTL
    assert err == f"tokenctl: rotation_deferred: {report['next_step']}\n"
    assert "it can promote from 2027-01-15T08:05:00Z" in err
    assert "`tokenctl rotate-keys --force`" in err

    _, _, refresh_err = ctl.run("rotate-keys", "--refresh")
    assert "`tokenctl rotate-keys --refresh --force`" in refresh_err

    code, out, err = ctl.run("rotate-keys", "--force")
    forced = json.loads(out)
    assert (code, forced["promoted"], forced["deferred"], err) == (0, True, False, "")


def test_list_keys_shows_lifecycle_times_in_iso_8601(ctl: Ctl) -> None:
    ctl.stack.clock.advance(CACHE)
    ctl.json("rotate-keys")  # one retired key, one next key, with their times
    listed = ctl.json("list-keys")
    times = [
        value
        for key_set in ("access", "refresh")
        for key in listed[key_set]["keys"]
        for name, value in key.items()
        if name.endswith("_at")
    ]
    assert times
    assert all(value is None or ISO_UTC.fullmatch(value) for value in times)
    assert any(value is not None for value in times)
    (retired,) = [k for k in listed["access"]["keys"] if k["status"] == "retired"]
    assert retired["retired_at"] == "2027-01-15T08:05:00Z"
