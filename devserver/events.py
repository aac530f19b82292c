"""``make events``: events/ rendered ready to run, with fresh values from the local stack.

The events that carry a token, a fingerprint or an id hold ``{{placeholders}}`` (the tests fill
them with tokens they mint). This fills them from the running `make dev` stack (or, for `make
invoke`, the embedded one): the demo user logs in twice (two sessions), an admin for the
admin events (``events-admin``, created on first use with a random password that is never
printed, reset on later runs) logs in once, and each file gets the values of the account its
scenario needs. The output goes to ``.dev/events/`` (git-ignored): it holds live tokens.

Events with no placeholder (the login events, which use the demo user) are copied unchanged,
so the folder is complete: ``sam local invoke Fn -e .dev/events/<dir>/<file>`` for any file.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devserver.seed import DEMO_PASSWORD, DEMO_USERNAME
from devserver.template import REPO_ROOT

if TYPE_CHECKING:
    from tokencore.grant import TokenGrant
    from tokencore.runtime import Runtime

EVENTS_DIR: Final = REPO_ROOT / "events"
RENDERED_DIR: Final = REPO_ROOT / ".dev" / "events"
PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")
EVENTS_ADMIN: Final = "events-admin"
DEVICE_ID: Final = "laptop-7f3a"  # the device the login events name


@dataclass(frozen=True, slots=True)
class Login:
    """One session's values, as the events name them."""

    user_id: str
    grant: TokenGrant
    token_id: str
    expires_at: int
    unbound_token: str  # the same session's token without a fingerprint (REST TOKEN events)


@dataclass(frozen=True, slots=True)
class Logins:
    user: Login
    user_other: Login  # a second session of the same user
    admin: Login


def log_in(runtime: Runtime) -> Logins:
    """Fresh sessions in the stack ``runtime`` is wired to."""
    from tokencore.errors import UserExists

    users = runtime.users
    admin_password = secrets.token_urlsafe(24)
    try:
        admin = users.create_user(EVENTS_ADMIN, admin_password, roles=("admin", "user"))
    except UserExists:
        admin = users.store.get_by_username(EVENTS_ADMIN)
        if admin.disabled:
            users.enable_user(admin.user_id)
        users.change_password(admin.user_id, admin_password)
    return Logins(
        user=_login(runtime, DEMO_USERNAME, DEMO_PASSWORD),
        user_other=_login(runtime, DEMO_USERNAME, DEMO_PASSWORD),
        admin=_login(runtime, EVENTS_ADMIN, admin_password),
    )


def _login(runtime: Runtime, username: str, password: str) -> Login:
    from tokencore.jose.codec import b64url_decode, json_object
    from tokencore.service import LoginRequest
    from tokencore.tokens.claims import AccessClaims
    from tokencore.tokens.mint import mint_access_token, new_token_id

    grant = runtime.auth.login(
        LoginRequest(username, password, source_ip="203.0.113.10", device_id=DEVICE_ID)
    )
    claims = json_object(b64url_decode(grant.access_token.split(".")[1]))
    settings = runtime.settings
    roles = claims.get("roles")
    issued_at = int(runtime.clock.now())
    unbound_claims = AccessClaims(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        subject=str(claims["sub"]),
        session_id=grant.session_id,
        token_id=new_token_id(),
        roles=tuple(str(role) for role in roles) if isinstance(roles, list) else (),
        issued_at=issued_at,
        expires_at=issued_at + settings.access_token_ttl_seconds,
    )
    unbound = mint_access_token(runtime.access_signer, unbound_claims).token
    return Login(
        user_id=str(claims["sub"]),
        grant=grant,
        token_id=str(claims.get("jti", "")),
        expires_at=int(claims["exp"]),
        unbound_token=unbound,
    )


def values_for(relative: str, logins: Logins) -> dict[str, str]:
    """The placeholder values for one event file (``authorizer/http-valid.json``)."""
    name = Path(relative).name
    admin_caller = "admin-route" in name or name == "admin-revoke.json"
    caller = logins.admin if admin_caller else logins.user
    return {
        "access_token": caller.unbound_token if "rest-token" in name else caller.grant.access_token,
        "fingerprint": caller.grant.fingerprint or "",
        "session_id": caller.grant.session_id,
        "user_id": caller.user_id,
        "refresh_token": caller.grant.refresh_token,
        "token_id": caller.token_id,
        "expires_at": str(caller.expires_at),
        "device_id": DEVICE_ID,
        "password": DEMO_PASSWORD,
        # The admin revokes the demo user; a user deletes their own other session, or (the
        # "other" event) the admin's session, which is refused.
        "target_user_id": logins.user.user_id if admin_caller else logins.admin.user_id,
        "target_session_id": (
            logins.admin.grant.session_id
            if name == "sessions-delete-other.json"
            else logins.user_other.grant.session_id
        ),
    }


def render_text(text: str, values: dict[str, str]) -> str:
    """``text`` with its placeholders filled; JSON string values are escaped as JSON."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for {{{{{name}}}}}")
        return json.dumps(values[name])[1:-1]

    return PLACEHOLDER.sub(fill, text)


def render_file(relative: str, logins: Logins | None) -> str:
    text = (EVENTS_DIR / relative).read_text(encoding="utf-8")
    if not PLACEHOLDER.search(text):
        return text
    if logins is None:
        raise ValueError(f"{relative} has placeholders and no stack gave values")
    return render_text(text, values_for(relative, logins))


def event_files() -> list[str]:
    return sorted(str(path.relative_to(EVENTS_DIR)) for path in EVENTS_DIR.rglob("*.json"))


def render_all(runtime: Runtime, target: Path = RENDERED_DIR) -> list[Path]:
    logins = log_in(runtime)
    if target.exists():
        shutil.rmtree(target)
    written = []
    for relative in event_files():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_file(relative, logins), encoding="utf-8")
        path.chmod(0o600)  # live tokens
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    from devserver.invoke import InvokeError, stack_runtime

    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: make events  (against the running `make dev`)", file=sys.stderr)
        return 2
    target = Path(args[0]).resolve() if args else RENDERED_DIR
    try:
        with stack_runtime(require_running=True) as runtime:
            written = render_all(runtime, target)
    except InvokeError as exc:
        print(f"make events: {exc}", file=sys.stderr)
        return 1
    shown = target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target
    print(
        f"make events: {len(written)} events in {shown}/ (tokens valid for "
        f"{runtime.settings.access_token_ttl_seconds} s; run it again for fresh ones)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
