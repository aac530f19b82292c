"""tokenctl: the operator CLI, for what no HTTP route should do.

Accounts (create-user, set-password, set-roles, enable-user, disable-user, list-users, unlock),
sessions (list-sessions, revoke-session, revoke-user), keys (rotate-keys, revoke-key, list-keys,
show-jwks) and tokens (verify against the published JWKS; decode, unverified). Wiring comes
from ``tokencore.runtime.Runtime`` and Settings from the environment, exactly as in the
functions, and the account and session commands run the services' own flows
(``tokencore.users``, ``tokencore.sessionservice``, security events included), the key commands
the rotation function's (``tokencore.ops``). With
``AWS_ENDPOINT_URL`` set (``make ctl`` sets it to the local stack) every call goes there; unset,
boto3 uses the normal credential chain and the real AWS endpoints.

Output is one JSON document on stdout, every instant in it ISO 8601 UTC
(``2026-01-31T12:00:00Z``). Errors are one line on stderr, ``tokenctl: <code>: <message>``, and
a non-zero exit: 1 for a failed operation, 2 for bad usage (the code is then ``usage_error``),
130 when interrupted. tokencore's messages never carry key material, tokens or passwords, and
this module prints nothing else: a token given to ``decode`` or ``verify`` is never echoed, nor
is a password, nor the arguments of a usage error.

A value may start with "-" (an RFC 7638 kid in base64url does about one time in 64, so may a
username): every argument that is not one of the command's own options is a value, and ``--``
still ends the options.

Keys (docs/keys.md is the runbook):

* ``rotate-keys [--refresh] [--force]`` runs one rotation now: with Secrets Manager keys, the
  same four protocol steps the rotation function runs on schedule (``ops.rotation``); in KMS
  mode, a new KMS key and a moved alias (``ops.kmsrotation``). The next key is promoted only
  once verifiers have had it for JWKS_CACHE_TTL_SECONDS: until then the rotation is deferred,
  and says so on stderr with when it can promote; ``--force`` promotes at once.
* ``revoke-key KID`` is the emergency: the key leaves its set and the public JWKS at once (an
  active key is replaced by the next one, or a fresh one); every verifier refuses its tokens
  within JWKS_CACHE_TTL_SECONDS.
* ``list-keys`` shows each key's status and lifecycle times; ``show-jwks`` what verifiers see.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn

from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.errors import InvalidRequest, TokenCoreError, UserNotFound

if TYPE_CHECKING:
    from tokencore.runtime import Runtime
    from tokencore.sessions.base import Session
    from tokencore.users import User, UserSummary

PROG: Final = "tokenctl"
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
UNVERIFIED_WARNING: Final = (
    "UNVERIFIED: the signature, issuer, audience and expiry were NOT checked; "
    "never use this output to make a decision"
)
VERIFIED_NOTE: Final = (
    "signature (against the published JWKS), typ, issuer, audience, expiry and not-before "
    "checked; NOT the session (revoked or not), the fingerprint binding or a route's roles: "
    "the authorizer checks those per request"
)
ADMIN_REASON: Final = "admin"  # sessions.REASON_ADMIN, without importing the store here
DEFAULT_PAGE_SIZE: Final = 50
# Report fields holding an instant (epoch seconds), shown as ISO 8601 UTC.
_INSTANT_SUFFIXES: Final = ("_at", "_until")


class CliError(Exception):
    """A failure worth one line to the operator: a short code and a message (no secrets)."""

    def __init__(self, code: str, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


# --- helpers ----------------------------------------------------------------------------------


def _runtime(args: argparse.Namespace) -> Runtime:
    given: Runtime | None = args.runtime
    if given is not None:
        return given
    from tokencore.runtime import Runtime

    return Runtime(clock=args.clock)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_iso_instants(value: Any, key: str = "") -> Any:
    """A report with every instant field (``*_at``, ``*_until``) as ISO 8601 UTC."""
    if isinstance(value, dict):
        return {name: _with_iso_instants(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_with_iso_instants(item) for item in value]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and key.endswith(_INSTANT_SUFFIXES):
        return _iso(value)
    return value


def _roles(text: str) -> list[str]:
    return [role.strip() for role in text.split(",") if role.strip()]


def _user_view(user: User | UserSummary) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "email": user.email,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "created_at": _iso(user.created_at),
        "password_changed_at": _iso(user.password_changed_at),
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
        raise CliError(
            UserNotFound.code, f"no user with the id or username {reference!r}"
        ) from None


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise CliError("password_mismatch", "the passwords do not match")
        return first
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    password = password.removesuffix("\r")
    if not password:
        raise CliError(
            "no_password", "no password on stdin (give --password, or type it at the prompt)"
        )
    return password


def _read_token(args: argparse.Namespace) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The token (argument, or stdin for ``-`` or none) and its decoded header and claims."""
    from tokencore.jose.codec import b64url_decode, json_object
    from tokencore.tokens import MAX_TOKEN_LENGTH

    token = args.token if args.token not in (None, "-") else sys.stdin.read()
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise CliError("malformed_token", f"give one token of 1 to {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise CliError("malformed_token", "not a JWS in compact form (three dot-separated parts)")
    try:
        header = json_object(b64url_decode(parts[0]))
        claims = json_object(b64url_decode(parts[1]))
    except (TokenCoreError, ValueError):
        raise CliError(
            "malformed_token", "the header or payload is not base64url-encoded JSON"
        ) from None
    return token, header, claims


def _claim_times(claims: dict[str, Any]) -> dict[str, str | None]:
    return {
        name: _iso(claims[name])
        for name in ("iat", "nbf", "exp")
        if isinstance(claims.get(name), int | float) and not isinstance(claims[name], bool)
    }


def _notice(code: str, message: str) -> None:
    """A line on stderr for the operator that is not a failure (exit 0)."""
    print(f"{PROG}: {code}: {message}", file=sys.stderr)


# --- accounts ---------------------------------------------------------------------------------


def cmd_create_user(args: argparse.Namespace) -> Any:
    password = _read_password(args)
    user = _runtime(args).users.create_user(
        args.username, password, email=args.email, roles=_roles(args.roles)
    )
    return _user_view(user)


def cmd_set_password(args: argparse.Namespace) -> Any:
    """A new password; every session of the user ends (UserService.change_password)."""
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    password = _read_password(args)
    changed, revoked = runtime.users.replace_password(user.user_id, password)
    return {
        "user_id": changed.user_id,
        "password_changed_at": _iso(changed.password_changed_at),
        "sessions_revoked": revoked,
    }


def cmd_set_roles(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    return _user_view(runtime.users.set_roles(user.user_id, _roles(args.roles)))


def cmd_enable_user(args: argparse.Namespace) -> Any:
    """Sessions ended by disabling stay ended: the user logs in again."""
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    view = _user_view(runtime.users.enable_user(user.user_id))
    view["was_disabled"] = user.disabled
    return view


def cmd_disable_user(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    revoked = runtime.users.disable_user(user.user_id)
    return {"user_id": user.user_id, "disabled": True, "sessions_revoked": revoked}


def cmd_list_users(args: argparse.Namespace) -> Any:
    page = _runtime(args).user_store.list_users(args.limit, args.cursor)
    return {
        "users": [_user_view(user) for user in page.users],
        "next_cursor": page.next_cursor,
    }


def cmd_unlock(args: argparse.Namespace) -> Any:
    """Clear the login rate-limit windows of a username and/or a source address."""
    from tokencore.audit import hash_identifier, security_event
    from tokencore.ratelimit import SCOPE_LOGIN_IP, SCOPE_LOGIN_USER
    from tokencore.users import username_rate_key

    if args.user is None and args.ip is None:
        raise CliError(
            "usage_error", "give --user NAME, --ip ADDRESS or both", exit_code=EXIT_USAGE
        )
    targets: list[tuple[str, str, str]] = []  # (scope, what the operator gave, rate key)
    if args.user is not None:
        targets.append((SCOPE_LOGIN_USER, args.user, username_rate_key(args.user)))
    if args.ip is not None:
        text = args.ip.strip()
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise CliError("invalid_argument", "--ip is not an IPv4 or IPv6 address") from None
        # The login counts the address as API Gateway spells it, normally the canonical form.
        targets.extend((SCOPE_LOGIN_IP, address, key) for key in dict.fromkeys((address, text)))
    limiter = _runtime(args).rate_limiter
    cleared: dict[tuple[str, str], int] = {}
    for scope, given, key in targets:
        count = limiter.clear(scope, key)
        cleared[(scope, given)] = cleared.get((scope, given), 0) + count
        # Joined with the login's events: the same hashed labels (functions/issuer).
        security_event(
            "rate_limit_cleared",
            level=logging.INFO,
            scope=scope,
            count=count,
            actor="operator",
            user=hash_identifier(key) if scope == SCOPE_LOGIN_USER else None,
            source_ip=key if scope == SCOPE_LOGIN_IP else None,
        )
    return {
        "cleared": [
            {"scope": scope, "key": given, "counters_removed": count}
            for (scope, given), count in cleared.items()
        ]
    }


# --- sessions ---------------------------------------------------------------------------------


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
        raise CliError(SessionNotFound.code, "no such session") from None
    return {"session_id": args.session_id, "revoked": True, "already_revoked": not revoked}


def cmd_revoke_user(args: argparse.Namespace) -> Any:
    """The admin route's flow (the user's marker first, then the index), by the operator."""
    runtime = _runtime(args)
    user = _find_user(runtime, args.user)
    return {
        "user_id": user.user_id,
        "sessions_revoked": runtime.session_service.admin_revoke(user.user_id),
    }


# --- keys -------------------------------------------------------------------------------------


def cmd_rotate_keys(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    if not args.refresh and runtime.settings.key_backend == "kms":
        report = runtime.kms_rotation.rotate(force=args.force)
    else:
        report = runtime.key_rotation.rotate(
            "refresh" if args.refresh else "access", force=args.force
        )
    ttl = runtime.settings.jwks_cache_ttl_seconds
    report["signers_follow_within_seconds"] = ttl
    report = _with_iso_instants(report)
    report["deferred"] = bool(report.get("deferred_reason")) and not report.get("promoted")
    if report["deferred"]:
        until = report.get("deferred_until")
        when = (
            f"it can promote from {until}: run rotate-keys again then"
            if until
            else f"run rotate-keys again in JWKS_CACHE_TTL_SECONDS ({ttl} s)"
        )
        flags = "--refresh --force" if args.refresh else "--force"
        report["next_step"] = (
            f"not promoted ({report['deferred_reason']}): {when}, or promote now with "
            f"`tokenctl rotate-keys {flags}` (verifiers without the next key refetch the JWKS "
            "on its unknown kid, at most once per JWKS_REFETCH_MIN_INTERVAL_SECONDS)"
        )
        _notice("rotation_deferred", report["next_step"])
    return report


def cmd_revoke_key(args: argparse.Namespace) -> Any:
    from tokencore.jose.codec import is_valid_kid

    if not is_valid_kid(args.kid):
        raise CliError("invalid_kid", "that is not a key id")
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
        raise CliError(
            "key_not_found", f"no key {args.kid!r} in the access or refresh key set"
        ) from None
    report["verifiers_refuse_within_seconds"] = runtime.settings.jwks_cache_ttl_seconds
    return _with_iso_instants(report)


def cmd_list_keys(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    rotation = runtime.key_rotation
    access = (
        runtime.kms_rotation.describe()
        if runtime.settings.key_backend == "kms"
        else rotation.describe("access")
    )
    return _with_iso_instants({"access": access, "refresh": rotation.describe("refresh")})


def cmd_show_jwks(args: argparse.Namespace) -> Any:
    from tokencore.keys import jwks_document

    runtime = _runtime(args)
    return jwks_document(runtime.public_key_source.load_verification_keys())


# --- tokens -----------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> Any:
    """An access token verified as the authorizer's first step does it, against the JWKS
    verifiers read (PUBLIC_JWKS_PARAMETER), fetched now."""
    from tokencore.keys.keyring import KeyRing
    from tokencore.tokens.verify import VerifyOptions, verify_access_token_and_key

    token, header, claims = _read_token(args)
    runtime = _runtime(args)
    settings = runtime.settings
    published = KeyRing(
        runtime.public_key_source,
        runtime.clock,
        cache_ttl_seconds=settings.jwks_cache_ttl_seconds,
        refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
    )
    _, key = verify_access_token_and_key(
        token, published, VerifyOptions.for_access(settings), runtime.clock.now()
    )
    return {
        "verified": True,
        "checked": VERIFIED_NOTE,
        "kid": key.kid,
        "header": header,
        "claims": claims,
        "times": _claim_times(claims),
    }


def cmd_decode(args: argparse.Namespace) -> Any:
    _, header, claims = _read_token(args)
    print(f"{PROG}: {UNVERIFIED_WARNING}", file=sys.stderr)
    return {
        "verified": False,
        "warning": UNVERIFIED_WARNING,
        "header": header,
        "claims": claims,
        "times": _claim_times(claims),
    }


# --- parsing ----------------------------------------------------------------------------------


Command = Callable[[argparse.Namespace], Any]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors carry a code and never echo the arguments (one of
    them may be a password or a token), and which knows its options, so that a value starting
    with "-" stays a value (``_values_after_options``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options_taking_values: dict[str, bool] = {}
        self.commands: dict[str, _Parser] = {}
        kwargs.setdefault("allow_abbrev", False)  # --pass is not --password
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*names, **kwargs)
        for name in action.option_strings:
            self.options_taking_values[name] = action.nargs != 0
        return action

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message = "unrecognized arguments (not shown: one may be a secret)"
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: usage_error: {message}\n")


def _values_after_options(parser: _Parser, argv: Sequence[str]) -> list[str]:
    """``argv`` with the command's options first and every other argument after ``--``, so
    argparse never takes a value that starts with "-" (a kid, a token, a username) for an
    unknown option. An option's own value is joined to it (``--password=-x``)."""
    if not argv or argv[0] not in parser.commands:
        return list(argv)
    known = parser.commands[argv[0]].options_taking_values
    options: list[str] = []
    values: list[str] = []
    rest: Iterator[str] = iter(argv[1:])
    for arg in rest:
        if arg == "--":
            values.extend(rest)
            break
        name = arg.split("=", 1)[0]
        if name not in known:
            values.append(arg)
        elif known[name] and "=" not in arg:
            value = next(rest, None)
            options.append(arg if value is None else f"{arg}={value}")
        else:
            options.append(arg)
    return [argv[0], *options, *(["--", *values] if values else [])]


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Operator CLI for tokencore. Settings come from the environment (the functions' "
            "names); AWS_ENDPOINT_URL selects a local stack, unset means real AWS. Output is "
            "JSON with ISO 8601 UTC times; errors are one line, 'tokenctl: <code>: <message>', "
            "exit 1 (2: bad usage)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> _Parser:
        sub: _Parser = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        parser.commands[name] = sub
        return sub

    def password_option(sub: _Parser) -> None:
        sub.add_argument(
            "--password",
            help="the password (visible in shell history and ps: prefer the prompt, or one "
            "line on stdin when stdin is not a terminal); at least PASSWORD_MIN_LENGTH "
            "characters",
        )

    # accounts
    sub = add("create-user", cmd_create_user, "create a user (password from a prompt or stdin)")
    sub.add_argument("username")
    password_option(sub)
    sub.add_argument("--email")
    sub.add_argument("--roles", default="", help="comma-separated, e.g. admin,user")

    sub = add(
        "set-password",
        cmd_set_password,
        "set a user's password (from a prompt or stdin) and end every session of theirs",
    )
    sub.add_argument("user", help="user id or username")
    password_option(sub)

    sub = add("set-roles", cmd_set_roles, "replace a user's roles (effective at next refresh)")
    sub.add_argument("user", help="user id or username")
    sub.add_argument("--roles", required=True, help='comma-separated; "" removes every role')

    sub = add(
        "enable-user",
        cmd_enable_user,
        "enable a disabled user (the sessions disabling ended stay ended)",
    )
    sub.add_argument("user", help="user id or username")

    sub = add("disable-user", cmd_disable_user, "disable a user and revoke their sessions")
    sub.add_argument("user", help="user id or username")

    sub = add(
        "list-users",
        cmd_list_users,
        "users a page at a time (never a password hash); give --cursor the page's next_cursor "
        "for the next one (null: no more). On DynamoDB this scans the table",
    )
    sub.add_argument("--limit", type=_page_size, default=DEFAULT_PAGE_SIZE, help="1 to 1000")
    sub.add_argument("--cursor", help="next_cursor of the previous page")

    sub = add(
        "unlock",
        cmd_unlock,
        "clear the login rate-limit windows (LOGIN_RATE_LIMIT, LOGIN_IP_RATE_LIMIT) of a "
        "username and/or a source address, so their next login attempt counts afresh",
    )
    sub.add_argument("--user", help="the username as people log in with it")
    sub.add_argument("--ip", help="the source address (IPv4 or IPv6)")

    # sessions
    sub = add("list-sessions", cmd_list_sessions, "a user's active sessions")
    sub.add_argument("user", help="user id or username")

    sub = add("revoke-session", cmd_revoke_session, "revoke one session")
    sub.add_argument("session_id")

    sub = add("revoke-user", cmd_revoke_user, "revoke every session of a user")
    sub.add_argument("user", help="user id or username")

    # keys
    sub = add(
        "rotate-keys",
        cmd_rotate_keys,
        "one rotation now: the next key becomes active, the active one retired, a new next key "
        "is published, expired retired keys are removed (--refresh: the refresh key set). "
        "Deferred, and said so, while the next key is younger than JWKS_CACHE_TTL_SECONDS",
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
    sub.add_argument(
        "kid", help="the key id (list-keys, or the kid of a token: decode); may start with -"
    )

    add("list-keys", cmd_list_keys, "kids, statuses and lifecycle times of both key sets")

    add("show-jwks", cmd_show_jwks, "the public access-token keys verifiers use")

    # tokens
    sub = add(
        "verify",
        cmd_verify,
        "verify an access token against the published JWKS (signature, issuer, audience, "
        "expiry) and show it; the session, fingerprint and roles are not checked",
    )
    sub.add_argument("token", nargs="?", help="the token, or - (default) to read it from stdin")

    sub = add(
        "decode",
        cmd_decode,
        "show a token's header and claims, UNVERIFIED (diagnostics only, never a decision)",
    )
    sub.add_argument("token", nargs="?", help="the token, or - (default) to read it from stdin")
    return parser


def _page_size(text: str) -> int:
    from tokencore.users.base import MAX_PAGE_SIZE

    try:
        size = int(text, 10)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"a page holds 1 to {MAX_PAGE_SIZE} users")
    return size


def main(
    argv: Sequence[str] | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    runtime: Runtime | None = None,
) -> int:
    """``clock``: the wall clock, or the local stack's (``make ctl``, devserver.clock).
    ``runtime``: the wiring to use instead of one built from the environment (tests)."""
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(_values_after_options(parser, given))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.clock = clock
    args.runtime = runtime
    handler: Command = args.handler
    try:
        with _security_events_on_stderr():
            result = handler(args)
    except CliError as exc:
        return _fail(exc.code, exc.message, exc.exit_code)
    except TokenCoreError as exc:
        return _fail(exc.code, exc.message)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line, and never a message that may echo input
        return _fail("internal_error", f"unexpected {type(exc).__name__}")
    try:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `tokenctl ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return 0


@contextlib.contextmanager
def _security_events_on_stderr() -> Iterator[None]:
    """The security events the flows emit (role changes, revocations, unlocks: hashed ids, never
    a secret), one JSON line each on stderr, as the functions log them; an operator's record.
    Without this, Python's last-resort handler printed only the message, at WARNING only."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    events = logging.getLogger("tokencore")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(LambdaPowertoolsFormatter(service=PROG))
    stream.setLevel(logging.INFO)
    level = events.level
    events.addHandler(stream)
    events.setLevel(logging.INFO)
    try:
        yield
    finally:
        events.removeHandler(stream)
        events.setLevel(level)


def _fail(code: str, message: str, exit_code: int = EXIT_FAILED) -> int:
    first_line = message.splitlines()[0] if message else "failed"
    print(f"{PROG}: {code}: {first_line}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
