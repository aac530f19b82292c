"""The attacker's toolkit for the HTTP attack suite: a raw client, the local stacks' keys, and
token forging.

How the suite reaches the checks it attacks: a forged token with a bad claim must carry a valid
signature, or it would be refused at the signature check and never reach the claim checks.
The local stack keeps its key sets in its embedded AWS endpoint (moto, ``AWS_ENDPOINT_URL``);
``Edge.key_set`` reads them there with boto3, exactly as ``tokenctl`` would, so a test can
sign tokens with the stack's own access key (claims, header and type attacks) and its refresh
HMAC key. Nothing here is a way into a deployed stack: it is the legitimate operator path of a
throwaway local one. Attacks that need no key (alg none, key confusion, stripped signatures)
use none.

Every request has a socket timeout of ``REQUEST_TIMEOUT`` seconds and its elapsed time is
recorded: "bounded time" is asserted on every answer. The bound catches a hang (a server stuck
on hostile input, a connection never closed), not a slow machine: answers take milliseconds,
and how fast they come is `make bench`'s business, never a test's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from argon2 import PasswordHasher

from devserver.template import load_template, parameter_defaults
from tests.e2e.conftest import RunningStack
from tests.security.secrets_registry import REGISTRY, register_http_answer
from tokencore.clock import SYSTEM_CLOCK
from tokencore.config import Settings
from tokencore.keys import KeySet
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner
from tokencore.users import DynamoDBUserStore, RevokeAllSessions, UserService

REQUEST_TIMEOUT = 20.0  # seconds: the bound on every answer ("bounded time"): only a hang
REFRESH_COOKIE = "__Secure-rt"
FINGERPRINT_COOKIE = "__Host-fgp"
# Headers that differ between two answers whatever their content: per-request ids and dates.
VOLATILE_HEADERS = frozenset({"apigw-requestid", "date", "x-amzn-requestid"})

_TEMPLATE_DEFAULTS = parameter_defaults(load_template())
TABLE = str(_TEMPLATE_DEFAULTS["SessionsTableName"])
SIGNING_SECRET = str(_TEMPLATE_DEFAULTS["SigningKeysSecretId"])
REFRESH_SECRET = str(_TEMPLATE_DEFAULTS["RefreshKeysSecretId"])
JWKS_PARAMETER = str(_TEMPLATE_DEFAULTS["PublicJwksParameter"])

_addresses = itertools.count(2)
_address_lock = threading.Lock()


def fresh_source_ip() -> str:
    """A loopback address of its own (127.0.0.0/8 all reaches the stack on Linux), so that the
    per-IP login limit of one test never spills into another."""
    with _address_lock:
        n = next(_addresses)
    return f"127.{(n // 250) % 250}.{(n // 250) // 250}.{n % 250 + 2}"


# --- answers ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def cookies(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Set-Cookie by name: (value, lower-cased attributes; flags map to "")."""
        found: dict[str, tuple[str, dict[str, str]]] = {}
        for line in self.header_values("Set-Cookie"):
            first, *rest = (part.strip() for part in line.split(";"))
            name, _, value = first.partition("=")
            attributes = {}
            for item in rest:
                key, _, val = item.partition("=")
                attributes[key.lower()] = val
            found[name] = (value, attributes)
        return found

    def comparable(self) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        """What a client can tell apart: status, body and headers, minus per-request ids."""
        headers = tuple(
            sorted((k.lower(), v) for k, v in self.headers if k.lower() not in VOLATILE_HEADERS)
        )
        return self.status, self.body, headers

    def describe(self) -> str:
        return f"{self.status} {self.body[:200]!r}"


# --- tokens ---------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(part: Mapping[str, Any] | bytes) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return b64url(raw)


def forge(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    *,
    key: PrivateKeyEntry | None = None,
    secret: bytes | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact JWS signed with ``key`` (RS256/ES256/EdDSA/HS256 entry), HMAC-SHA256 with a raw
    ``secret``, or carrying ``signature`` as given (b"" leaves the third segment empty)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    if signature is None:
        if key is not None:
            signature = LocalSigner(key).sign(signing_input.encode("ascii"))
        elif secret is not None:
            signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        else:
            raise ValueError("forge needs a key, a secret or a signature")
    return f"{signing_input}.{b64url(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    """A token's payload, unverified (the test inspects what it was given)."""
    decoded: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return decoded


def header_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(b64url_decode(token.split(".")[0]))
    return decoded


# --- sessions -------------------------------------------------------------------------------


@dataclass
class Login:
    """What a login handed the client."""

    username: str
    answer: Answer
    access: str
    refresh: str
    fingerprint: str
    session_id: str
    source_ip: str

    @property
    def claims(self) -> dict[str, Any]:
        return claims_of(self.access)

    @property
    def user_id(self) -> str:
        return str(self.claims["sub"])


@dataclass
class Account:
    username: str
    password: str = field(repr=False)
    user_id: str


class Edge:
    """One running local stack, as an attacker meets it over HTTP (plus its AWS endpoint)."""

    def __init__(self, name: str, stack: RunningStack) -> None:
        self.name = name
        self.stack = stack
        self._accounts = itertools.count(1)
        self._users: UserService | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.env['AWS_PORT']}"

    def now(self) -> int:
        """The stack's time in whole seconds (tests move its clock: devserver.clock)."""
        return int(self.stack.clock())

    # --- HTTP ---------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        bearer: str | None = None,
        cookies: Mapping[str, str] | None = None,
        source_ip: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
        requested_with: bool = True,
    ) -> Answer:
        """``requested_with``: send ``X-Requested-With`` as the web client does (what a
        cross-site form cannot send); False makes the request a form could make."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        if requested_with and not any(k.lower() == "x-requested-with" for k, _ in pairs):
            pairs.append(("X-Requested-With", "tokencore"))
        if json_body is not None:
            body = json.dumps(json_body).encode()
            if not any(k.lower() == "content-type" for k, _ in pairs):
                pairs.append(("Content-Type", "application/json"))
        if bearer is not None:
            pairs.append(("Authorization", f"Bearer {bearer}"))
        if cookies:
            pairs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
        connection = http.client.HTTPConnection(
            "127.0.0.1",
            self.port,
            timeout=timeout,
            source_address=(source_ip or "127.0.0.1", 0),
        )
        started = time.monotonic()
        try:
            connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
            for name, value in pairs:
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            raw = connection.getresponse()
            answer = Answer(raw.status, raw.getheaders(), raw.read(), 0.0)
        finally:
            connection.close()
        answer.elapsed = time.monotonic() - started
        register_http_answer(answer.status, answer.body, answer.header_values("Set-Cookie"))
        return answer

    def raw(self, data: bytes, *, timeout: float = REQUEST_TIMEOUT) -> tuple[int | None, float]:
        """Send raw bytes (a malformed request); the status of the answer (None if the
        connection closed without one) and the elapsed time."""
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            with _suppress_reset():
                sock.shutdown(socket.SHUT_WR)
            received = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                received += chunk
        elapsed = time.monotonic() - started
        status: int | None = None
        if received.startswith(b"HTTP/"):
            status = int(received.split(b" ", 2)[1])
        else:
            # http.server answers a request line it cannot parse as HTTP/0.9: no status line,
            # only its error page.
            page = re.search(rb"Error code: (\d{3})", received)
            status = int(page.group(1)) if page else None
        return status, elapsed

    # --- the API's verbs --------------------------------------------------------------------

    def login(
        self, account: Account, *, source_ip: str | None = None, device_id: str | None = None
    ) -> Login:
        source_ip = source_ip or fresh_source_ip()
        headers = {"X-Device-Id": device_id} if device_id else None
        answer = self.send(
            "POST",
            "/auth/login",
            json_body={"username": account.username, "password": account.password},
            headers=headers,
            source_ip=source_ip,
        )
        assert answer.status == 200, answer.describe()
        body = answer.json()
        cookies = answer.cookies
        return Login(
            username=account.username,
            answer=answer,
            access=body["access_token"],
            refresh=body.get("refresh_token") or cookies[REFRESH_COOKIE][0],
            fingerprint=cookies[FINGERPRINT_COOKIE][0],
            session_id=body["session_id"],
            source_ip=source_ip,
        )

    def refresh(self, token: str, fingerprint: str | None = None, **extra: Any) -> Answer:
        cookies = {REFRESH_COOKIE: token}
        if fingerprint:
            cookies[FINGERPRINT_COOKIE] = fingerprint
        return self.send("POST", "/auth/refresh", cookies=cookies, **extra)

    def me(self, token: str, fingerprint: str | None, **extra: Any) -> Answer:
        cookies = {FINGERPRINT_COOKIE: fingerprint} if fingerprint else None
        return self.send("GET", "/me", bearer=token, cookies=cookies, **extra)

    # --- its AWS endpoint (the operator's side) -------------------------------------------

    def aws(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def key_set(self, purpose: str) -> KeySet:
        secret = SIGNING_SECRET if purpose == "access" else REFRESH_SECRET
        text = self.aws("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        return KeySet.from_secret_document(text, "access" if purpose == "access" else "refresh")

    def users(self) -> UserService:
        """The stack's users, through tokencore against its endpoint (an operator's view)."""
        with self._lock:
            if self._users is None:
                from tokencore.sessions import DynamoDBSessionStore

                client = self.aws("dynamodb")
                settings = Settings(token_issuer=self.base_url, sessions_table_name=TABLE)
                sessions = DynamoDBSessionStore(TABLE, settings, SYSTEM_CLOCK, boto3_client=client)
                self._users = UserService(
                    DynamoDBUserStore(TABLE, SYSTEM_CLOCK, boto3_client=client),
                    RevokeAllSessions(sessions),
                    SYSTEM_CLOCK,
                    # The account's hash uses cheap parameters: the stack upgrades it to the
                    # OWASP ones at the first login (rehash), as it would an imported account.
                    hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
                )
            return self._users

    def new_account(self, roles: Iterable[str] = ("user",), prefix: str = "sec") -> Account:
        """A user of its own for one test (per-user limits never spill between tests)."""
        n = next(self._accounts)
        username = f"{prefix}-{self.name}-{n}"
        password = f"pw-{username}-{hashlib.sha256(username.encode()).hexdigest()[:12]}"
        user = self.users().create_user(
            username, password, email=f"{username}@example.com", roles=list(roles)
        )
        REGISTRY.register(password, "password")
        return Account(username, password, user.user_id)


class _suppress_reset:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]
