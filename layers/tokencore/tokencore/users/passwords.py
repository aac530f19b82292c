"""Argon2id password hashing, the dummy hash that makes unknown users cost the same, and rehash.

Passwords are taken exactly as given: no strip, no Unicode normalization, no truncation, so
"pass " and "pass" are different passwords, as are a composed and a decomposed "é". Only the
length is bounded (1 to 1024 characters) so that hostile input cannot buy unbounded work.

A password being SET (a new account, a password change) must also be at least
PASSWORD_MIN_LENGTH characters (``check_new_password``; default 8, NIST SP 800-63B 5.1.1.1).
A login never checks that: a short password there is just a wrong password, with the same
answer after the same Argon2 work, and accounts set up under a lower minimum keep working.
"""

from __future__ import annotations

import contextlib
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tokencore.errors import InvalidRequest, PasswordTooShort

# OWASP Password Storage Cheat Sheet, "Argon2id": "Use Argon2id with a minimum configuration
# of 19 MiB of memory, an iteration count of 2, and 1 degree of parallelism"
# (https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id).
# p=1 also suits Lambda: one vCPU-share per invocation, and higher parallelism would only cut
# the number of logins a container can verify at once. argon2-cffi's own default is the
# heavier RFC 9106 low-memory profile (64 MiB, t=3, p=4), too slow for a 128-512 MB function.
OWASP_TIME_COST = 2
OWASP_MEMORY_COST_KIB = 19_456  # 19 MiB
OWASP_PARALLELISM = 1
HASH_LEN = 32
SALT_LEN = 16

MIN_PASSWORD_CHARS = 1
MAX_PASSWORD_CHARS = 1024  # well above the 128 we promise; bounds the work per request
# NIST SP 800-63B 5.1.1.1: memorized secrets "SHALL be at least 8 characters in length";
# characters are Unicode code points (len of a str), as 5.1.1.2 counts them.
DEFAULT_MIN_NEW_PASSWORD_CHARS = 8
# A fixed input for the dummy hash; it is never compared with anything a user sends as a
# secret, it only has to cost one Argon2 run with the current parameters.
_DUMMY_PASSWORD = "tokencore-dummy-password-for-unknown-users"


def owasp_hasher() -> PasswordHasher:
    """A hasher with the OWASP minimum Argon2id parameters (the production default)."""
    return PasswordHasher(
        time_cost=OWASP_TIME_COST,
        memory_cost=OWASP_MEMORY_COST_KIB,
        parallelism=OWASP_PARALLELISM,
        hash_len=HASH_LEN,
        salt_len=SALT_LEN,
        type=Type.ID,
    )


def validate_password(password: str) -> None:
    """Raise InvalidRequest for a password we refuse to hash: not a string, empty, longer than
    1024 characters, or not encodable as UTF-8 (a lone surrogate from a JSON ``\\ud800``)."""
    if not isinstance(password, str):
        raise InvalidRequest("password must be a string")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidRequest("password is empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidRequest(f"password is longer than {MAX_PASSWORD_CHARS} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("password is not valid Unicode text") from exc


def check_new_password(password: str, min_length: int = DEFAULT_MIN_NEW_PASSWORD_CHARS) -> None:
    """``validate_password``, and PasswordTooShort below ``min_length`` characters: for a
    password being set, never for one presented at login."""
    validate_password(password)
    if len(password) < min_length:
        raise PasswordTooShort(f"password must be at least {min_length} characters")


_dummy_lock = threading.Lock()
_dummy_hashes: dict[tuple[int, int, int, int, int, Type], str] = {}


def _parameters_of(hasher: PasswordHasher) -> tuple[int, int, int, int, int, Type]:
    return (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
        hasher.type,
    )


class Passwords:
    """Hash, verify and rehash with one set of Argon2 parameters.

    Pass a cheaper ``PasswordHasher`` in tests only; production uses ``owasp_hasher()``.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher if hasher is not None else owasp_hasher()

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    def hash(self, password: str) -> str:
        validate_password(password)
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches. False on a mismatch, and also on a stored hash that
        cannot be verified at all (corrupt or not Argon2): then a dummy verify runs, so even
        that path costs one full Argon2 run, and the caller denies."""
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            self.verify_dummy(password)
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend exactly the work of one real verify, for a user who does not exist."""
        with contextlib.suppress(VerifyMismatchError):
            self._hasher.verify(self.dummy_hash(), password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than ours (rehash on login)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False  # not ours to repair here; verify() already refused it

    def dummy_hash(self) -> str:
        """A hash with the current parameters, computed on first use (never at import: that
        would add an Argon2 run to every cold start, and to every test that imports us),
        then kept for the life of the process."""
        key = _parameters_of(self._hasher)
        cached = _dummy_hashes.get(key)
        if cached is not None:
            return cached
        with _dummy_lock:
            cached = _dummy_hashes.get(key)
            if cached is None:
                cached = self._hasher.hash(_DUMMY_PASSWORD)
                _dummy_hashes[key] = cached
            return cached
