"""Username normalization: one unique form per name, hostile input refused before it is used."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokencore.errors import InvalidRequest
from tokencore.users import (
    display_username,
    normalize_username,
    username_rate_key,
    validate_email,
    validate_roles,
)


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("Alice", "alice"),
        ("  Alice\t", "alice"),
        ("\uff21\uff4c\uff49\uff43\uff45", "alice"),  # fullwidth
        ("\u3000alice\u3000", "alice"),  # ideographic spaces around
        ("Stra\u00dfe", "strasse"),  # casefold, not lower()
        ("\ufb01ona", "fiona"),  # ligature
        ("Cafe\u0301", "caf\u00e9"),  # decomposed accent composes
        ("caf\u00e9", "caf\u00e9"),
        ("alice@example.com", "alice@example.com"),
        ("\u0391\u03bb\u03b9\u03ba\u03b7", "\u03b1\u03bb\u03b9\u03ba\u03b7"),  # Greek
        ("a" * 64, "a" * 64),
    ],
)
def test_normalizes(given_name: str, expected: str) -> None:
    assert normalize_username(given_name) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "\u3000",
        "a" * 65,
        "x" * 257,  # refused before normalization runs
        "ali ce",
        "ali\tce",
        "ali\u00a0ce",  # no-break space inside
        "alice\x00",
        "alice\x7f",
        "ali\u200bce",  # zero-width space
        "ali\u200dce",  # zero-width joiner
        "\u202eecila",  # right-to-left override
        "alice\ue000",  # private use
        "\ud800",  # lone surrogate
    ],
)
def test_refuses(bad: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_username(bad)
    assert bad.strip() == "" or bad.strip() not in caught.value.message


def test_refuses_non_strings() -> None:
    with pytest.raises(InvalidRequest):
        normalize_username(None)  # type: ignore[arg-type]


def test_display_name_keeps_case_and_form_but_not_surrounding_space() -> None:
    assert display_username("  Alice ") == "Alice"
    assert display_username("\uff21lice") == "\uff21lice"
    with pytest.raises(InvalidRequest):
        display_username("two words")


def test_rate_key_is_shared_across_forms_and_defined_for_garbage() -> None:
    assert username_rate_key("ALICE") == username_rate_key("\uff41lice") == "alice"
    assert username_rate_key("two  words") == username_rate_key("TWO  WORDS")
    assert username_rate_key("two  words").startswith("invalid:")
    assert username_rate_key("x" * 10_000) == username_rate_key("X" * 10_000)  # bounded


@given(st.text(max_size=80))
@settings(max_examples=400, deadline=None)
def test_normal_form_is_stable_and_clean(name: str) -> None:
    try:
        normalized = normalize_username(name)
    except InvalidRequest:
        return
    assert normalize_username(normalized) == normalized  # idempotent
    assert normalized == normalized.strip()
    assert 1 <= len(normalized) <= 64
    assert unicodedata.is_normalized("NFKC", normalized)
    assert not any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in normalized)
    assert normalize_username(name.upper()) == normalized or _upper_changes_meaning(name)


def _upper_changes_meaning(name: str) -> bool:
    # upper() is not always invertible by casefold (e.g. "\u0131" dotless i -> "I" -> "i");
    # those names may differ after upper(), which is fine; everything else must not.
    try:
        return normalize_username(name.upper()) != normalize_username(name.lower())
    except InvalidRequest:
        return True


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([], ()),
        (["user", "admin", "user"], ("admin", "user")),
        (("billing:read", "ops-team", "a_b"), ("a_b", "billing:read", "ops-team")),
        (["r" * 64], ("r" * 64,)),
    ],
)
def test_roles_are_unique_and_sorted(roles: list[str], expected: tuple[str, ...]) -> None:
    assert validate_roles(roles) == expected


@pytest.mark.parametrize(
    "roles",
    [
        ["Admin"],
        ["has space"],
        [""],
        ["r" * 65],
        ["a#b"],
        "admin",
        [1],
        [f"r{i}" for i in range(21)],
    ],
)
def test_bad_roles_are_refused(roles: object) -> None:
    with pytest.raises(InvalidRequest):
        validate_roles(roles)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("email", "expected"),
    [(None, None), ("", None), (" a@example.com ", "a@example.com"), ("A+b@Ex.com", "A+b@Ex.com")],
)
def test_emails_are_shape_checked_only(email: str | None, expected: str | None) -> None:
    assert validate_email(email) == expected


@pytest.mark.parametrize(
    "email", ["no-at-sign", "@example.com", "a@", "a b@example.com", "a@b\x00"]
)
def test_bad_emails_are_refused(email: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_email(email)
