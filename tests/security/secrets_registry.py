"""Every secret the test run produces, so that the log-hygiene check can look for it.

What is registered (``install`` is called once per run from ``tests/conftest.py``):

* tokens: every ``MintedToken`` and every ``TokenGrant`` built in this process (access token,
  refresh token, fingerprint cookie value), whoever minted them;
* passwords: every password an account is created with (``Passwords.hash``) and every password
  that verifies (``Passwords.verify`` returning True): the real account passwords, whatever test
  set them. Wrong passwords are registered by the tests that send them;
* key material: the private members of every ``PrivateKeyEntry`` (RSA ``d p q dp dq qi``, EC and
  Ed25519 ``d``, the HMAC ``k``), as they appear in a key secret;
* what crosses HTTP from the local stacks (they run in subprocesses, so nothing above sees their
  tokens): the tokens and cookie values the test clients receive and the passwords they send.
  The security tier's client registers them itself; the e2e client is wrapped by ``install``.

"Whole or in part": a secret is indexed by every 16-character window of it (the whole secret
when shorter), so a log line that carries any 16 consecutive characters of a secret is a leak.
A JWS is indexed by its payload and signature only: its header (``{"alg":..,"kid":..}``) is
public and the same for every token of a key. Secrets shorter than ``MIN_SECRET_CHARS`` are not
registered (a 3-letter password would match ordinary words). Plus a catch-all that needs no
registry: anything shaped like a JWS (``eyJ...``) in a log line is a leak.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Values that look like secrets and are public on purpose: the local stack's demo password,
# which the README and the banner of `make dev` print so that a newcomer can log in.
PUBLIC = frozenset({"demo-password"})
WINDOW = 16
MIN_SECRET_CHARS = 10
# A compact JWS: a JSON header in base64url ("eyJ" is '{"'), then at least a payload.
JWS_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True, slots=True)
class Leak:
    kind: str
    where: str  # the source of the log line
    excerpt: str  # the matching window, shortened


class SecretsRegistry:
    """Thread-safe: the local stacks' clients and the functions run in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}  # secret -> kind
        # hash() of every window: a run registers thousands of tokens, and ints are half the
        # memory of the strings; a hit is confirmed against the secrets themselves.
        self._windows: set[int] = set()
        self._short: set[str] = set()  # secrets shorter than a window: searched whole

    def register(self, value: object, kind: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS or value in PUBLIC:
            return
        with self._lock:
            if value in self._secrets:
                return
            self._secrets[value] = kind
            if len(value) < WINDOW:
                self._short.add(value)
            else:
                self._windows.update(hash(window) for window in _windows(value))

    def register_all(self, values: Iterable[object], kind: str) -> None:
        for value in values:
            self.register(value, kind)

    def __len__(self) -> int:
        return len(self._secrets)

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for kind in self._secrets.values():
                counts[kind] = counts.get(kind, 0) + 1
            return counts

    def scan(self, lines: Iterable[tuple[str, str]]) -> list[Leak]:
        """Every leak in ``(source, line)`` pairs: a window of a registered secret, or a
        JWS-shaped string."""
        with self._lock:
            windows = frozenset(self._windows)
            shorts = tuple(self._short)
            secrets = dict(self._secrets)
        leaks: list[Leak] = []
        for source, line in lines:
            shaped = JWS_SHAPED.search(line)
            if shaped:
                leaks.append(Leak("jws-shaped", source, shaped.group(0)[:24] + "..."))
                continue
            short = next((secret for secret in shorts if secret in line), None)
            if short is not None:
                leaks.append(Leak(secrets[short], source, short[:4] + "..."))
                continue
            for hit in _windows_in(line, windows):
                kind = next((k for s, k in secrets.items() if hit in _windows(s)), None)
                if kind is not None:  # not a hash collision
                    leaks.append(Leak(kind, source, hit[:6] + "..."))
                    break
        return leaks


def _windows(secret: str) -> set[str]:
    text = secret
    if JWS_SHAPED.match(secret) and secret.count(".") == 2:
        text = secret.split(".", 1)[1]  # payload and signature; the header is public
    if len(text) <= WINDOW:
        return {text}
    return {text[start : start + WINDOW] for start in range(len(text) - WINDOW + 1)}


def _windows_in(line: str, windows: frozenset[int]) -> Iterator[str]:
    """The substrings of ``line`` whose hash is a registered window's."""
    for start in range(len(line) - WINDOW + 1):
        candidate = line[start : start + WINDOW]
        if hash(candidate) in windows:
            yield candidate


REGISTRY = SecretsRegistry()


# --- automatic registration -------------------------------------------------------------------


def _wrap_init(cls: type, register: Callable[[Any], None]) -> Callable[[], None]:
    """Wrap ``cls.__init__`` so that every instance is registered; returns the undo."""
    original: Callable[..., None] = getattr(cls, "__init__")  # noqa: B009  (as cls.__init__)

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        with contextlib.suppress(Exception):  # registering never changes what a test sees
            register(self)

    setattr(cls, "__init__", init)  # noqa: B010  (mypy refuses assigning __init__)
    return lambda: setattr(cls, "__init__", original)


def _wrap_method(
    cls: type, name: str, register: Callable[[tuple[Any, ...], Any], None]
) -> Callable[[], None]:
    original = getattr(cls, name)

    @functools.wraps(original)
    def method(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        with contextlib.suppress(Exception):
            register(args, result)
        return result

    setattr(cls, name, method)
    return lambda: setattr(cls, name, original)


def _register_key(entry: Any) -> None:
    from tokencore.keys.jwk import private_jwk

    document = private_jwk(entry)
    REGISTRY.register_all((document.get(name) for name in _PRIVATE_MEMBERS), "private key")


def install() -> Callable[[], None]:
    """Start registering what tokencore produces in this process; returns the undo."""
    from tokencore.keys.jwk import PrivateKeyEntry
    from tokencore.service import TokenGrant
    from tokencore.tokens.mint import MintedToken
    from tokencore.users.passwords import Passwords

    def grant(value: Any) -> None:
        REGISTRY.register(value.access_token, "access token")
        REGISTRY.register(value.refresh_token, "refresh token")
        REGISTRY.register(value.fingerprint, "fingerprint")

    def hashed(args: tuple[Any, ...], _result: Any) -> None:
        REGISTRY.register(args[1] if len(args) > 1 else None, "password")

    def verified(args: tuple[Any, ...], result: Any) -> None:
        if result is True and len(args) > 2:
            REGISTRY.register(args[2], "password")

    undo = [
        _wrap_init(MintedToken, lambda value: REGISTRY.register(value.token, "token")),
        _wrap_init(TokenGrant, grant),
        _wrap_init(PrivateKeyEntry, _register_key),
        _wrap_method(Passwords, "hash", hashed),
        _wrap_method(Passwords, "verify", verified),
    ]
    undo += _wrap_e2e_client()

    def uninstall() -> None:
        for step in reversed(undo):
            step()

    return uninstall


def register_http_answer(status: int, body: bytes, set_cookies: Iterable[str]) -> None:
    """The tokens a local stack handed a client: JSON body members and cookie values."""
    if body[:1] == b"{":
        import json

        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            REGISTRY.register(document.get("access_token"), "access token")
            REGISTRY.register(document.get("refresh_token"), "refresh token")
    for line in set_cookies:
        name, _, rest = line.partition("=")
        REGISTRY.register(rest.split(";", 1)[0].strip().strip('"'), f"cookie {name.strip()}")


def _wrap_e2e_client() -> list[Callable[[], None]]:
    """The e2e tier's client talks to its local stacks over HTTP: register what it sends and
    receives, without touching its code."""
    try:
        from tests.e2e.client import Client
    except ImportError:  # pragma: no cover - the e2e tier is optional for this mechanism
        return []

    def answered(_args: tuple[Any, ...], response: Any) -> None:
        register_http_answer(response.status, response.body, response.header_values("Set-Cookie"))

    def logged_in(args: tuple[Any, ...], _response: Any) -> None:
        REGISTRY.register(args[2] if len(args) > 2 else None, "password")

    return [
        _wrap_method(Client, "request", answered),
        _wrap_method(Client, "login", logged_in),
    ]
