"""tokenctl's argument handling (the commands themselves run against the local stack: e2e)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokencore import cli


@pytest.mark.parametrize("kid", ["-VmE0idaChMl5B12LIgaxY6", "--x", "plain-kid"])
def test_revoke_key_takes_a_kid_that_begins_with_a_dash(
    kid: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kid is base64url: one thumbprint in 64 begins with "-", and the emergency command must
    still take it (argparse alone would read it as an unknown option)."""
    seen: list[str] = []

    def revoke(args: Any) -> dict[str, str]:
        seen.append(args.kid)
        return {"kid": args.kid}

    monkeypatch.setattr(cli, "cmd_revoke_key", revoke)
    assert cli.main(["revoke-key", kid]) == 0
    assert seen == [kid]
    assert json.loads(capsys.readouterr().out) == {"kid": kid}


def test_revoke_key_help_is_still_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "cmd_revoke_key", lambda args: pytest.fail("no kid was given"))
    assert cli.main(["revoke-key", "--help"]) == 0
    assert "usage: tokenctl revoke-key" in capsys.readouterr().out
