"""tokenctl's operands that may start with "-": a key id is a base64url thumbprint, and one in 64
starts with "-", which argparse would otherwise read as an unknown option."""

from __future__ import annotations

import pytest

from tokencore.cli import _operands_first, build_parser

DASHED_KID = "-zQ3x0ExampleThumbprintOfAKey_abcdefghijklmno"


@pytest.mark.parametrize("command", ["revoke-key", "decode"])
def test_a_dashed_operand_is_an_operand(command: str) -> None:
    args = build_parser().parse_args(_operands_first([command, DASHED_KID]))
    assert (args.kid if command == "revoke-key" else args.token) == DASHED_KID


def test_without_the_rewrite_argparse_refuses_it() -> None:
    # The failure the rewrite exists for (tests/e2e/test_rotation.py met it 1 run in 64).
    with pytest.raises(SystemExit):
        build_parser().parse_args(["revoke-key", DASHED_KID])


@pytest.mark.parametrize(
    "argv",
    [
        ["revoke-key", "plainKid"],
        ["revoke-key", "--", DASHED_KID],
        ["decode", "-"],
        ["decode", "--help"],
        ["list-keys"],
        [],
    ],
)
def test_other_command_lines_are_left_alone(argv: list[str]) -> None:
    assert _operands_first(argv) == argv
