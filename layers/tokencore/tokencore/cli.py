"""tokenctl: the operator CLI, for what no HTTP route should do.

Accounts (create-user, set-roles, disable-user), sessions (list-sessions, revoke-session,
revoke-user), keys (rotate-keys, revoke-key, list-keys, show-jwks; docs/keys.md is the runbook)
and one diagnostic (decode). Wiring comes from ``tokencore.runtime.Runtime`` and Settings from
the environment, exactly as in the functions: the session commands run the revoker's own flows
(``tokencore.sessionservice``, security events included) and the key commands the rotation
function's (``tokencore.ops``). With ``AWS_ENDPOINT_URL`` set (``make ctl``) every call goes
there; unset, boto3 uses the normal credential chain and the real AWS endpoints.

Output is one JSON document on stdout. Errors are one line on stderr
(``tokenctl: <code>: <message>``) and a non-zero exit: 1 for a failed operation, 2 for bad
usage (argparse's own exit). No message carries key material, tokens or passwords, and this
module prints nothing else: a token given to ``decode`` is never echoed, nor is a password.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.errors import InvalidRequest, TokenCoreError, UserNotFound

if TYPE_CHECKING:
    from tokencore.runtime import Runtime
    from tokencore.sessions.base import Session
    from tokencore.users import User

PROG: Final = "tokenctl"
EXIT_FAILED: Final = 1
UNVERIFIED_WARNING: Final = (
    "UNVERIFIED: the signature, issuer, audience and expiry were NOT checked; "
    "never use this output to make a decision"
)
ADMIN_REASON: Final = "admin"  # sessions.REASON_ADMIN, without importing the store here


class CliError(Exception):
    """A failure worth one line to the operator (no secrets in the message)."""


# --- helpers ----------------------------------------------------------------------------------


def _runtime(args: argparse.Namespace) -> Runtime:
    from tokencore.runtime import Runtime

    return Runtime(clock=args.clock)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _roles(text: str) -> list[str]:
    return [role.strip() for role in text.split(",") if role.strip()]


def _user_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "email": user.email,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "created_at": _iso(user.created_at),
    }


def _session_view(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "created_at": _iso(session.created_at),
        "last_activity": _iso(session.last_activity),
        "expires_at": _iso(session.refresh_expires_at),
        "generation": session.generation,
        "device_id": session.device_id,
        "source_ip": session.source_ip,
        "user_agent": session.user_agent,
    }


def _find_user(runtime: Runtime, reference: str) -> User:
    """A user by id, else by username (as typed: the store normalizes it)."""
    from tokencore.wire import is_valid_user_id

    store = runtime.user_store
    if is_valid_user_id(reference):
        try:
            return store.get(reference)
        except UserNotFound:
            pass
    try:
        return store.get_by_username(reference)
    except (UserNotFound, InvalidRequest):
        raise CliError(f"no user with the id or username {reference!r}") from None


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise CliError("the passwords do not match")
        return first
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    password = password.removesuffix("\r")
    if not password:
        raise CliError("no password on stdin (give --password, or type it at the prompt)")
    return password


# --- commands ---------------------------------------------------------------------------------


def cmd_create_user(args: argparse.Namespace) -> Any:
    password = _read_password(args)
    user = _runtime(args).users.create_user(
        args.username, password, email=args.email, roles=_roles(args.roles)
    )
    return _user_view(user)


def cmd_set_roles(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    return _user_view(runtime.users.set_roles(user.user_id, _roles(args.roles)))


def cmd_disable_user(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    revoked = runtime.users.disable_user(user.user_id)
    return {"user_id": user.user_id, "disabled": True, "sessions_revoked": revoked}


def cmd_list_sessions(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    sessions = runtime.session_service.list_sessions(user.user_id)
    return {"user_id": user.user_id, "sessions": [_session_view(s) for s in sessions]}


def cmd_revoke_session(args: argparse.Namespace) -> Any:
    """The same flow (and security event) as an HTTP revocation, by the operator."""
    from tokencore.errors import SessionNotFound

    try:
        revoked = _runtime(args).session_service.revoke_session(args.session_id, ADMIN_REASON)
    except SessionNotFound:
        raise CliError("no such session") from None
    return {"session_id": args.session_id, "revoked": True, "already_revoked": not revoked}


def cmd_revoke_user(args: argparse.Namespace) -> Any:
    """The admin route's flow (the user's marker first, then the index), by the operator."""
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    return {
        "user_id": user.user_id,
        "sessions_revoked": runtime.session_service.admin_revoke(user.user_id),
    }


def cmd_rotate_keys(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    if not args.refresh and runtime.settings.key_backend == "kms":
        report = runtime.kms_rotation.rotate(force=args.force)
    else:
        report = runtime.key_rotation.rotate(
            "refresh" if args.refresh else "access", force=args.force
        )
    report["signers_follow_within_seconds"] = runtime.settings.jwks_cache_ttl_seconds
    return report


def cmd_revoke_key(args: argparse.Namespace) -> Any:
    from tokencore.jose.codec import is_valid_kid

    if not is_valid_kid(args.kid):
        raise CliError("that is not a key id")
    runtime = _runtime(args)
    rotation = runtime.key_rotation
    purpose = rotation.find(args.kid)
    try:
        if purpose is not None:
            report = rotation.revoke(args.kid, purpose)
        elif runtime.settings.key_backend == "kms":
            report = runtime.kms_rotation.revoke(args.kid)
        else:
            # In no set: still listed in the public JWKS (a stale publication) it is removed
            # from there; otherwise LookupError.
            report = rotation.revoke(args.kid, "access")
    except LookupError:
        raise CliError(f"no key {args.kid!r} in the access or refresh key set") from None
    report["verifiers_refuse_within_seconds"] = runtime.settings.jwks_cache_ttl_seconds
    return report


def cmd_list_keys(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    rotation = runtime.key_rotation
    access = (
        runtime.kms_rotation.describe()
        if runtime.settings.key_backend == "kms"
        else rotation.describe("access")
    )
    return {"access": access, "refresh": rotation.describe("refresh")}


def cmd_show_jwks(args: argparse.Namespace) -> Any:
    from tokencore.keys import jwks_document

    runtime = _runtime(args)
    return jwks_document(runtime.public_key_source.load_verification_keys())


def cmd_decode(args: argparse.Namespace) -> Any:
    from tokencore.jose.codec import b64url_decode, json_object
    from tokencore.tokens import MAX_TOKEN_LENGTH

    token = args.token if args.token not in (None, "-") else sys.stdin.read()
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise CliError(f"give one token of 1 to {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise CliError("not a JWS in compact form (three dot-separated parts)")
    try:
        header = json_object(b64url_decode(parts[0]))
        claims = json_object(b64url_decode(parts[1]))
    except (TokenCoreError, ValueError):
        raise CliError("the header or payload is not base64url-encoded JSON") from None
    times = {
        name: _iso(claims[name])
        for name in ("iat", "nbf", "exp")
        if isinstance(claims.get(name), int | float) and not isinstance(claims[name], bool)
    }
    print(f"{PROG}: {UNVERIFIED_WARNING}", file=sys.stderr)
    return {
        "verified": False,
        "warning": UNVERIFIED_WARNING,
        "header": header,
        "claims": claims,
        "times": times,
    }


# --- parsing ----------------------------------------------------------------------------------


Command = Callable[[argparse.Namespace], Any]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Operator CLI for tokencore. Settings come from the environment (the functions' "
            "names); AWS_ENDPOINT_URL selects a local stack, unset means real AWS."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = add("create-user", cmd_create_user, "create a user (password from a prompt or stdin)")
    sub.add_argument("username")
    sub.add_argument(
        "--password",
        help="the password (visible in shell history and ps: prefer the prompt or stdin)",
    )
    sub.add_argument("--email")
    sub.add_argument("--roles", default="", help="comma-separated, e.g. admin,user")

    sub = add("set-roles", cmd_set_roles, "replace a user's roles (effective at next refresh)")
    sub.add_argument("user", help="user id or username")
    sub.add_argument("--roles", required=True, help='comma-separated; "" removes every role')

    sub = add("disable-user", cmd_disable_user, "disable a user and revoke their sessions")
    sub.add_argument("user", help="user id or username")

    sub = add("list-sessions", cmd_list_sessions, "a user's active sessions")
    sub.add_argument("user", help="user id or username")

    sub = add("revoke-session", cmd_revoke_session, "revoke one session")
    sub.add_argument("session_id")

    sub = add("revoke-user", cmd_revoke_user, "revoke every session of a user")
    sub.add_argument("user", help="user id or username")

    sub = add(
        "rotate-keys",
        cmd_rotate_keys,
        "one rotation now: the next key becomes active, the active one retired, a new next key "
        "is published, expired retired keys are removed (--refresh: the refresh key set)",
    )
    sub.add_argument("--refresh", action="store_true", help="rotate the refresh HMAC key set")
    sub.add_argument(
        "--force",
        action="store_true",
        help="promote the next key even if it was published less than JWKS_CACHE_TTL_SECONDS "
        "ago (verifiers then refetch on its unknown kid)",
    )

    sub = add(
        "revoke-key",
        cmd_revoke_key,
        "EMERGENCY: remove a key from its set and the public JWKS now; its tokens are refused "
        "everywhere within JWKS_CACHE_TTL_SECONDS",
    )
    sub.add_argument("kid", help="the key id (list-keys, or the kid of a token: decode)")

    add("list-keys", cmd_list_keys, "kids, statuses and lifecycle times of both key sets")

    add("show-jwks", cmd_show_jwks, "the public access-token keys verifiers use")

    sub = add(
        "decode",
        cmd_decode,
        "show a token's header and claims, UNVERIFIED (diagnostics only, never a decision)",
    )
    sub.add_argument("token", nargs="?", help="the token, or - (default) to read it from stdin")
    return parser


# Commands whose one operand may start with "-": key ids are base64url thumbprints (1 in 64
# starts with "-"), and argparse would read such an operand as an option.
_DASHED_OPERAND_COMMANDS = frozenset({"revoke-key", "decode"})


def _operands_first(argv: list[str]) -> list[str]:
    """``revoke-key -abc`` as ``revoke-key -- -abc``: an argument after such a command that
    starts with "-" and is not an option of ours is its operand."""
    if len(argv) < 2 or argv[0] not in _DASHED_OPERAND_COMMANDS or "--" in argv:
        return argv
    for index, word in enumerate(argv[1:], start=1):
        if word.startswith("-") and word not in ("-", "-h", "--help"):
            return [*argv[:index], "--", *argv[index:]]
    return argv


def main(argv: Sequence[str] | None = None, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """``clock``: the wall clock, or the local stack's (``make ctl``, devserver.clock)."""
    parser = build_parser()
    try:
        args = parser.parse_args(_operands_first(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.clock = clock
    handler: Command = args.handler
    try:
        result = handler(args)
    except CliError as exc:
        return _fail(str(exc))
    except TokenCoreError as exc:
        return _fail(f"{exc.code}: {exc.message}")
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, and never a message that may echo input
        return _fail(f"unexpected {type(exc).__name__}")
    try:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `tokenctl ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return 0


def _fail(message: str) -> int:
    first_line = message.splitlines()[0] if message else "failed"
    print(f"{PROG}: {first_line}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
