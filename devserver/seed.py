"""Users the local stack creates at start: ``SEED_USERS`` and the demo user.

``SEED_USERS="name:password[:role,role];name2:password2"``: entries split on ``;``; in each, the
name ends at the first ``:`` and the password at the next one, and what follows is the roles
(comma-separated). So a seeded password cannot contain ``:`` or ``;`` (create such users with
``make ctl ARGS="create-user ..."``). Errors name the entry by position, never its password.

The demo user (``demo`` / ``demo-password``, role ``user``) is created unless SEED_USERS already
names a ``demo``. The password is fixed on purpose: the stack listens on 127.0.0.1 only, holds
nothing but what you put in it and is gone when it stops, and a fixed password lets the
walkthrough printed at start (and in the README) be copied as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from devserver.settings import DevError
from tokencore.errors import InvalidRequest, TokenCoreError
from tokencore.users import User, UserService, normalize_username

DEMO_USERNAME: Final = "demo"
DEMO_PASSWORD: Final = "demo-password"
DEMO_ROLES: Final = ("user",)


@dataclass(frozen=True, slots=True)
class SeedUser:
    username: str
    password: str = field(repr=False)
    roles: tuple[str, ...] = ()
    email: str | None = None


def parse_seed_users(text: str) -> list[SeedUser]:
    users: list[SeedUser] = []
    for position, entry in enumerate((item.strip() for item in text.split(";")), start=1):
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        password, _, roles_text = rest.partition(":")
        if not sep or not name.strip() or not password:
            raise DevError(f"SEED_USERS entry {position} must look like name:password[:role,role]")
        roles = tuple(role.strip() for role in roles_text.split(",") if role.strip())
        users.append(SeedUser(name.strip(), password, roles, _email_for(name.strip())))
    return users


def _email_for(username: str) -> str | None:
    """``<name>@example.com`` (a reserved domain) when that is a plausible address."""
    local = username.strip()
    if local and all(ch.isascii() and (ch.isalnum() or ch in "._-+") for ch in local):
        return f"{local}@example.com"
    return None


def demo_user() -> SeedUser:
    return SeedUser(DEMO_USERNAME, DEMO_PASSWORD, DEMO_ROLES, "demo@example.com")


def with_demo(users: Iterable[SeedUser]) -> list[SeedUser]:
    """``users`` plus the demo user, unless one of them already is ``demo``."""
    listed = list(users)
    names = {_normalized(user.username) for user in listed}
    if _normalized(DEMO_USERNAME) not in names:
        listed.append(demo_user())
    return listed


def _normalized(username: str) -> str:
    try:
        return normalize_username(username)
    except InvalidRequest:
        return username


def create_users(service: UserService, users: Iterable[SeedUser]) -> list[tuple[SeedUser, User]]:
    created = []
    for position, seed in enumerate(users, start=1):
        try:
            user = service.create_user(seed.username, seed.password, seed.email, seed.roles)
        except TokenCoreError as exc:
            raise DevError(
                f"cannot create seed user {position} ({exc.code}: {exc.message})"
            ) from exc
        created.append((seed, user))
    return created
