"""HTTP to the local stack from one source address, and the journal of every exchange.

Each request opens its own connection from ``source_ip`` (any 127.0.0.0/8 address: Linux
routes the whole block to loopback), so the stack's per-IP login limit sees the address a real
client would have. Every exchange is journalled with its route, status, Retry-After, the wall
times it was sent and answered (the stack's clock is the wall clock plus an offset the run
controls, so these place it in a rate-limit window) and its latency.

Nothing here prints or keeps a token in a message: tokens and cookie values go only to the
``on_secret`` observer (the test run's secrets registry) and to the caller.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final

REFRESH_COOKIE: Final = "__Secure-rt"
FINGERPRINT_COOKIE: Final = "__Host-fgp"
REQUEST_TIMEOUT_SECONDS: Final = 60.0  # generous: a slow machine is not a failure

OnSecret = Callable[[str, str], None]


def _ignore(_value: str, _kind: str) -> None:
    pass


@dataclass(slots=True)
class Exchange:
    route: str  # "POST /auth/login", "DELETE /auth/sessions/{id}", ...
    status: int  # 0: no answer (the connection failed or timed out)
    retry_after: str | None
    sent: float  # wall clock, seconds
    answered: float
    latency: float  # seconds, monotonic
    source_ip: str
    phase: str
    key: str | None = None  # login: the username; refresh: the user id
    error: str | None = None  # the transport error's class name


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def cookies(self) -> dict[str, str | None]:
        """Set-Cookie values by name; None for a cookie being cleared."""
        found: dict[str, str | None] = {}
        for key, line in self.headers:
            if key.lower() != "set-cookie":
                continue
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(line)
            except CookieError:
                continue
            for name, morsel in parsed.items():
                max_age = morsel["max-age"]
                cleared = (max_age != "" and int(max_age) <= 0) or not morsel.value
                found[name] = None if cleared else morsel.value
        return found

    def json(self) -> Any:
        return json.loads(self.body)


class Journal:
    """Every exchange of the run, and the phase it belongs to (thread-safe)."""

    def __init__(self, on_secret: OnSecret | None = None) -> None:
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self.phase = "setup"
        # phase -> the stack clock's offset during it (the run moves it only between phases)
        self.offsets: dict[str, float] = {}
        self.on_secret: OnSecret = on_secret or _ignore

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def secret(self, value: str | None, kind: str) -> None:
        if value:
            self.on_secret(value, kind)

    def in_phase(self, *phases: str) -> list[Exchange]:
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.phase in phases]


@dataclass
class Wire:
    """Requests to the stack's API from one source address."""

    port: int
    source_ip: str
    journal: Journal
    timeout: float = REQUEST_TIMEOUT_SECONDS
    headers: dict[str, str] = field(default_factory=dict)

    def send(
        self,
        method: str,
        path: str,
        *,
        route: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        key: str | None = None,
    ) -> Answer:
        send = {**self.headers, **(headers or {})}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            send["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=self.timeout, source_address=(self.source_ip, 0)
        )
        sent, started = time.time(), time.monotonic()
        try:
            connection.request(method, path, body=data, headers=send)
            raw = connection.getresponse()
            answer = Answer(raw.status, raw.getheaders(), raw.read())
            error = None
        except (OSError, http.client.HTTPException) as exc:
            answer, error = Answer(0, [], b""), type(exc).__name__
        finally:
            connection.close()
        latency = time.monotonic() - started
        self.journal.add(
            Exchange(
                route=route,
                status=answer.status,
                retry_after=answer.header("Retry-After"),
                sent=sent,
                answered=time.time(),
                latency=latency,
                source_ip=self.source_ip,
                phase=self.journal.phase,
                key=key,
                error=error,
            )
        )
        self._observe(answer)
        return answer

    def _observe(self, answer: Answer) -> None:
        """Hand every token and cookie value the stack gave out to the secrets observer."""
        if answer.body[:1] == b"{":
            try:
                document = answer.json()
            except ValueError:
                document = None
            if isinstance(document, dict):
                self.journal.secret(document.get("access_token"), "access token")
                self.journal.secret(document.get("refresh_token"), "refresh token")
        for name, value in answer.cookies().items():
            self.journal.secret(value, f"cookie {name}")


# --- reading our own tokens (bookkeeping only: the stack verifies, the run never trusts) ------


def _segment(token: str, index: int) -> dict[str, Any]:
    try:
        part = token.split(".")[index]
        document = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def token_header(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def token_claims(token: str) -> dict[str, Any]:
    return _segment(token, 1)
