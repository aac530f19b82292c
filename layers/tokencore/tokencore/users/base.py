"""What a user is, the rules every username, role and email must follow, and the store interface.

The abstract ``UserStore`` owns validation (Powertools style): each backend only does I/O, so
no backend can accept a name the other would refuse, and one contract suite runs against both.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokencore import wire
from tokencore.errors import InvalidRequest, UserNotFound

USERNAME_MAX_CHARS = 64
# Checked before normalizing, so hostile input is bounded before NFKC (which can expand a
# character up to 18-fold) runs on it.
USERNAME_MAX_INPUT_CHARS = 256
EMAIL_MAX_CHARS = 254  # RFC 5321 path limit
MAX_ROLES = 20  # roles travel in every access token, which must stay under 1 KB
MAX_PAGE_SIZE = 1000  # users per list_users page

_ROLE_PATTERN = re.compile(r"[a-z0-9_:-]{1,64}")


@dataclass(frozen=True, slots=True)
class User:
    """One account. ``username`` is for display; ``normalized_username`` is the unique key.

    The repr shows the id, roles and flags only: names, email and hash never reach a log line
    through an f-string or a traceback's locals.
    """

    user_id: str
    username: str = field(repr=False)
    normalized_username: str = field(repr=False)
    email: str | None = field(repr=False)
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    disabled: bool
    password_changed_at: float
    created_at: float
    # Every session created before this instant is revoked ("revoke all"): refresh refuses
    # them even if the eventually consistent index hid one from the bulk revocation.
    sessions_revoked_at: float = 0.0

    @property
    def standing(self) -> UserStanding:
        return UserStanding(
            user_id=self.user_id,
            roles=self.roles,
            disabled=self.disabled,
            password_changed_at=self.password_changed_at,
            sessions_revoked_at=self.sessions_revoked_at,
        )


@dataclass(frozen=True, slots=True)
class UserStanding:
    """What a session check reads of a user (tokencore.sessioncheck): never the password hash,
    the name or the email."""

    user_id: str
    roles: tuple[str, ...]
    disabled: bool
    password_changed_at: float
    sessions_revoked_at: float = 0.0


@dataclass(frozen=True, slots=True)
class UserSummary:
    """One user as a listing shows it: never the password hash (the DynamoDB backend does not
    even read it). The repr shows the id, roles and flags only, as ``User``'s does."""

    user_id: str
    username: str = field(repr=False)
    email: str | None = field(repr=False)
    roles: tuple[str, ...]
    disabled: bool
    created_at: float
    password_changed_at: float
    sessions_revoked_at: float = 0.0

    @classmethod
    def of(cls, user: User) -> UserSummary:
        return cls(
            user_id=user.user_id,
            username=user.username,
            email=user.email,
            roles=user.roles,
            disabled=user.disabled,
            created_at=user.created_at,
            password_changed_at=user.password_changed_at,
            sessions_revoked_at=user.sessions_revoked_at,
        )


@dataclass(frozen=True, slots=True)
class UserPage:
    """One page of ``UserStore.list_users``. ``next_cursor`` continues after this page (the
    last user's id); None when there is nothing after it. A page may come back shorter than
    asked, even empty, with a cursor: keep going until the cursor is None."""

    users: tuple[UserSummary, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class UserChanges:
    """The fields an update may set; ``None`` leaves a field as it is."""

    roles: tuple[str, ...] | None = None
    disabled: bool | None = None
    password_hash: str | None = field(default=None, repr=False)
    password_changed_at: float | None = None
    sessions_revoked_at: float | None = None

    def apply_to(self, user: User) -> User:
        return dataclasses.replace(
            user,
            sessions_revoked_at=(
                user.sessions_revoked_at
                if self.sessions_revoked_at is None
                else self.sessions_revoked_at
            ),
            roles=user.roles if self.roles is None else self.roles,
            disabled=user.disabled if self.disabled is None else self.disabled,
            password_hash=user.password_hash if self.password_hash is None else self.password_hash,
            password_changed_at=(
                user.password_changed_at
                if self.password_changed_at is None
                else self.password_changed_at
            ),
        )


def _is_refused_char(ch: str) -> bool:
    # Category C*: control, format (zero-width joiners and friends: invisible look-alikes),
    # surrogates, private use, unassigned. Z* and isspace(): any whitespace.
    category = unicodedata.category(ch)
    return category[0] in ("C", "Z") or ch.isspace()


def normalize_username(username: str) -> str:
    """The unique form of a username: NFKC, casefold, NFKC again, surrounding whitespace stripped.

    NFKC first folds compatibility forms (fullwidth letters U+FF21.., ligatures, the
    ideographic space) so they cannot register as a second "alice"; casefold is stronger than
    lower() ("Straße" == "strasse"); the second NFKC puts casefold's output back in normal
    form.
    Refused (InvalidRequest): empty, longer than 64 characters after normalizing, any control,
    format or private-use character, and whitespace inside the name (a name that differs from
    another only by its spaces is a phishing tool, and identifiers do not need spaces).
    """
    if not isinstance(username, str):
        raise InvalidRequest("username must be a string")
    if len(username) > USERNAME_MAX_INPUT_CHARS:
        raise InvalidRequest("username is too long")
    folded = unicodedata.normalize("NFKC", username).strip()
    folded = unicodedata.normalize("NFKC", folded.casefold())
    if not folded:
        raise InvalidRequest("username is empty")
    if len(folded) > USERNAME_MAX_CHARS:
        raise InvalidRequest("username is too long")
    if any(_is_refused_char(ch) for ch in folded) or any(
        unicodedata.category(ch)[0] == "C" for ch in username.strip()
    ):
        raise InvalidRequest("username contains whitespace or control characters")
    return folded


def display_username(username: str) -> str:
    """The name as given, less surrounding whitespace (validated by ``normalize_username``)."""
    normalize_username(username)
    return username.strip()


def username_rate_key(username: str) -> str:
    """The key to rate-limit logins by: the normalized name, so "Alice" and "ALICE" share a
    bucket; a name that cannot be normalized still gets a stable (bounded) key of its own."""
    try:
        return normalize_username(username)
    except InvalidRequest:
        raw = username[:USERNAME_MAX_INPUT_CHARS] if isinstance(username, str) else ""
        return "invalid:" + unicodedata.normalize("NFKC", raw).casefold().strip()


def validate_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """Each role is a short identifier ``[a-z0-9_:-]{1,64}``; returns them unique and sorted so
    equal role sets compare (and serialize) equal."""
    if isinstance(roles, str):  # "admin" would otherwise iterate as "a", "d", ...
        raise InvalidRequest("roles must be a collection of role names, not one string")
    unique = set()
    for role in roles:
        if not isinstance(role, str) or not _ROLE_PATTERN.fullmatch(role):
            raise InvalidRequest("each role must match [a-z0-9_:-]{1,64}")
        unique.add(role)
    if len(unique) > MAX_ROLES:
        raise InvalidRequest(f"at most {MAX_ROLES} roles")
    return tuple(sorted(unique))


def validate_email(email: str | None) -> str | None:
    """A light shape check only (one ``@``, no whitespace or control characters); the address
    is contact data, not an identifier, so it is neither normalized nor unique."""
    if email is None:
        return None
    if not isinstance(email, str):
        raise InvalidRequest("email must be a string")
    email = email.strip()
    if not email:
        return None
    local, at, domain = email.rpartition("@")
    if (
        len(email) > EMAIL_MAX_CHARS
        or not at
        or not local
        or not domain
        or any(_is_refused_char(ch) for ch in email)
    ):
        raise InvalidRequest("email is not a valid address")
    return email


# The wire's rule (one set of id bounds for the authorizer, the edge and the stores).
is_valid_user_id = wire.is_valid_user_id


def _check_password_hash(password_hash: str) -> None:
    if not isinstance(password_hash, str) or not password_hash.startswith("$argon2"):
        raise InvalidRequest("password_hash must be an encoded Argon2 hash")


class UserStore(ABC):
    """Users by id and by normalized username. Public methods validate, backends do I/O.

    Every backend must make ``create`` atomic: the username claim and the profile are written
    together or not at all, and of two creates of the same normalized name exactly one wins.
    """

    def create(self, user: User) -> None:
        """Store a new user. Raises UserExists when the normalized username is taken."""
        if not is_valid_user_id(user.user_id):
            raise InvalidRequest("user_id is malformed")
        if user.normalized_username != normalize_username(user.username):
            raise InvalidRequest("normalized_username does not match username")
        if validate_roles(user.roles) != user.roles:
            raise InvalidRequest("roles must be unique and sorted (use validate_roles)")
        if validate_email(user.email) != user.email:
            raise InvalidRequest("email must be validated (use validate_email)")
        _check_password_hash(user.password_hash)
        self._insert(user)

    def get(self, user_id: str) -> User:
        """The user with this id (read consistently). Raises UserNotFound."""
        if not is_valid_user_id(user_id):
            raise UserNotFound("user not found")
        user = self._load(user_id)
        if user is None:
            raise UserNotFound("user not found")
        return user

    def get_by_username(self, username: str) -> User:
        """The user whose normalized username matches. Raises InvalidRequest for a name that
        could never be registered, UserNotFound when nobody holds it."""
        user = self._load_by_username(normalize_username(username))
        if user is None:
            raise UserNotFound("user not found")
        return user

    def find_normalized(self, normalized_username: str) -> User | None:
        """The user holding an already normalized name, or None (no lookup for a name that
        is not in normal form: it could never have been registered)."""
        try:
            if normalize_username(normalized_username) != normalized_username:
                return None
        except InvalidRequest:
            return None
        return self._load_by_username(normalized_username)

    def list_users(self, limit: int = 100, cursor: str | None = None) -> UserPage:
        """Up to ``limit`` users, in the backend's order, after the user ``cursor`` names (a
        previous page's ``next_cursor``). For operators (tokenctl list-users): on DynamoDB it
        scans the table."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"a page holds 1 to {MAX_PAGE_SIZE} users")
        if cursor is not None and not is_valid_user_id(cursor):
            raise InvalidRequest("the cursor is not one a previous page gave")
        return self._list(limit, cursor)

    def set_roles(self, user_id: str, roles: Iterable[str]) -> User:
        return self._checked_update(user_id, UserChanges(roles=validate_roles(roles)))

    def set_disabled(self, user_id: str, disabled: bool) -> User:
        return self._checked_update(user_id, UserChanges(disabled=bool(disabled)))

    def set_password(self, user_id: str, password_hash: str, changed_at: float) -> User:
        """A new password: the hash and ``password_changed_at`` change together."""
        _check_password_hash(password_hash)
        return self._checked_update(
            user_id, UserChanges(password_hash=password_hash, password_changed_at=changed_at)
        )

    def mark_sessions_revoked(self, user_id: str, at: float) -> User:
        """Record that every session created before ``at`` is revoked. The marker never moves
        back: the backend raises it only while it is below ``at``, in one conditional write, so
        of two racing "revoke all" calls the later instant stays whatever order they land in."""
        if not is_valid_user_id(user_id):
            raise UserNotFound("user not found")
        return self._raise_sessions_revoked_at(user_id, float(at))

    def replace_password_hash(self, user_id: str, expected_hash: str, new_hash: str) -> bool:
        """Swap in a rehash of the SAME password, only if the stored hash is still
        ``expected_hash``. False when it is not (a concurrent password change won: writing the
        rehash of the old password over it would silently undo that change)."""
        _check_password_hash(new_hash)
        if not is_valid_user_id(user_id):
            return False
        return self._swap_password_hash(user_id, expected_hash, new_hash)

    def _checked_update(self, user_id: str, changes: UserChanges) -> User:
        if not is_valid_user_id(user_id):
            raise UserNotFound("user not found")
        return self._update(user_id, changes)

    # --- backend I/O ---------------------------------------------------------------------

    @abstractmethod
    def _insert(self, user: User) -> None:
        """Atomically claim ``user.normalized_username`` and write the profile (UserExists)."""

    @abstractmethod
    def _load(self, user_id: str) -> User | None: ...

    @abstractmethod
    def _load_by_username(self, normalized_username: str) -> User | None: ...

    @abstractmethod
    def _list(self, limit: int, cursor: str | None) -> UserPage: ...

    @abstractmethod
    def _update(self, user_id: str, changes: UserChanges) -> User:
        """Apply ``changes`` to an existing user and return it (UserNotFound if missing)."""

    @abstractmethod
    def _swap_password_hash(self, user_id: str, expected_hash: str, new_hash: str) -> bool: ...

    @abstractmethod
    def _raise_sessions_revoked_at(self, user_id: str, at: float) -> User:
        """Atomically: set ``sessions_revoked_at = at`` if it is below ``at``; return the user
        as it is afterwards (UserNotFound if missing)."""
