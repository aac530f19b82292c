"""Argon2id parameters, exact-as-given passwords, the lazy dummy hash and rehash detection."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from tokencore.errors import InvalidRequest
from tokencore.users import Passwords, owasp_hasher, validate_password
from tokencore.users import passwords as passwords_module


def cheap(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=8, parallelism=1)


def test_the_real_owasp_parameters_once() -> None:
    """The production hasher, for real (tens of milliseconds): Argon2id, m=19 MiB, t=2, p=1."""
    passwords = Passwords()
    encoded = passwords.hash("correct horse battery staple ")
    parameters = extract_parameters(encoded)
    assert parameters.type is Type.ID
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (
        19_456,
        2,
        1,
    )
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(encoded, "correct horse battery staple ")
    assert not passwords.verify(encoded, "correct horse battery staple")
    assert not passwords.needs_rehash(encoded)


def test_owasp_hasher_settings() -> None:
    hasher = owasp_hasher()
    assert (hasher.memory_cost, hasher.time_cost, hasher.parallelism) == (19_456, 2, 1)
    assert (hasher.hash_len, hasher.salt_len, hasher.type) == (32, 16, Type.ID)


@pytest.mark.parametrize(
    "password",
    ["x", "p" * 128, "p" * 1024, " padded ", "\u00e9", "e\u0301", "\U0001f511", "nul\x00inside"],
)
def test_accepted_exactly_as_given(password: str) -> None:
    passwords = Passwords(cheap())
    encoded = passwords.hash(password)
    assert passwords.verify(encoded, password)
    for other in {password + "x", password[:-1] or "y", password.strip() or "z"} - {password}:
        assert not passwords.verify(encoded, other)


@pytest.mark.parametrize("password", ["", "p" * 1025, "\ud800", None, b"bytes"])
def test_refused(password: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_password(password)  # type: ignore[arg-type]
    if isinstance(password, str) and password:
        assert password not in caught.value.message
    with pytest.raises(InvalidRequest):
        Passwords(cheap()).hash(password)  # type: ignore[arg-type]


def test_rehash_is_needed_when_parameters_change() -> None:
    old, new = Passwords(cheap(1)), Passwords(cheap(2))
    encoded = old.hash("pw")
    assert not old.needs_rehash(encoded)
    assert new.needs_rehash(encoded)
    assert new.verify(encoded, "pw")  # old hashes still verify under new parameters


def test_corrupt_hash_never_verifies_and_never_asks_for_rehash() -> None:
    passwords = Passwords(cheap())
    for corrupt in ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$garbage", "$2b$12$bcrypt"]:
        assert passwords.verify(corrupt, "pw") is False
        assert passwords.needs_rehash(corrupt) is False


def test_dummy_hash_is_computed_once_per_parameter_set() -> None:
    hasher = PasswordHasher(
        time_cost=7, memory_cost=8, parallelism=1
    )  # parameters used nowhere else
    key = (7, 8, 1, hasher.hash_len, hasher.salt_len, hasher.type)
    passwords_module._dummy_hashes.pop(key, None)
    first, second = Passwords(hasher), Passwords(hasher)
    assert key not in passwords_module._dummy_hashes  # not at construction
    dummy = first.dummy_hash()
    assert passwords_module._dummy_hashes[key] == dummy
    assert second.dummy_hash() == dummy  # shared by the process, not recomputed
    assert extract_parameters(dummy) == extract_parameters(first.hash("pw"))  # same cost


def test_nothing_is_hashed_at_import_time() -> None:
    """Importing the packages costs no Argon2 run (boto3: see test_imports)."""
    code = textwrap.dedent(
        """
        import tokencore.users, tokencore.ratelimit
        from tokencore.users import passwords
        assert passwords._dummy_hashes == {}, "dummy hash computed at import"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
