"""What the attack suite at the HTTP edge shares (test_http_attacks_*.py, one file per group of
sections). The suite is what a client on the network can try against the local stack
(``python -m devserver``: the template's routes, the real Lambda authorizer and handlers, API
Gateway HTTP API semantics), grouped by category.

Every attack asserts the same three things:

* refused: a 4xx, never a 2xx, never a 5xx (API Gateway answers 403 for every authorizer deny,
  so bearer-token attacks end in 403; grant routes answer 401 ``invalid_grant``);
* no oracle: every rejected token on one route gets the same status, body and headers
  (per-request ids and dates aside), whatever was wrong with it; compared per route;
* bounded time: every answer arrives within ``REQUEST_TIMEOUT`` (the socket timeout, 20 s: it
  catches a hang, never a slow machine).

How claim-level attacks reach the claim checks: a token with a bad claim must be validly signed,
or the signature check would refuse it first and the claim check would never be exercised. The
local stack keeps its key sets in its own moto endpoint (``AWS_ENDPOINT_URL``); the suite reads
them there with boto3 (``http_kit.Edge.key_set``), as an operator of that throwaway stack could,
and signs its forgeries with the stack's own keys. Each category also sends a positive control
(the same forging path with nothing wrong) that must be accepted: a refusal then proves the
check under attack refused it, not a broken forger.

Two stacks (``conftest.EDGE_SETTINGS``): ``sec`` (RS256, grace window 30 s, sampling off, tight
login limits, CORS for one origin, 2 s key cache) and ``strict`` (ES256, no grace window, every
request checks its session, refresh limit 3/60, no CORS).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    REQUEST_TIMEOUT,
    Account,
    Answer,
    Edge,
    Login,
    claims_of,
    forge,
)
from tests.security.tally import record
from tests.security.token_kit import apply_changes
from tokencore.keys.jwk import PrivateKeyEntry

EDGES = ["sec", "strict"]
LEEWAY = 30  # CLOCK_SKEW_LEEWAY_SECONDS: the template's default on both stacks
# The stacks' clocks run on with the wall clock while a test sends its cases (the two processes
# share it), so each time claim keeps its verdict however long sending takes: a time past an
# edge in the past stays past it; one past an edge in the future lies far past it; one inside
# the leeway after an expiry leaves its answer more than REQUEST_TIMEOUT to arrive.
MARGIN = 10  # seconds past an edge in the past (exp)
AHEAD = 600  # seconds past an edge in the future (nbf, iat): longer than any test takes
INSIDE = 5  # seconds after exp, inside the leeway: LEEWAY - INSIDE > REQUEST_TIMEOUT
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GATEWAY_FORBIDDEN = b'{"message":"Forbidden"}'
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "the refresh token is invalid, expired or revoked",
}
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


# --- refusing, recording, comparing ------------------------------------------------------------


def refused(category: str, case: str, answer: Answer, *, status: int | None = None) -> Answer:
    """Assert one attack was refused (4xx, never 2xx or 5xx) in bounded time, and count it."""
    ok = 400 <= answer.status < 500 and (status is None or answer.status == status)
    ok = ok and answer.elapsed < REQUEST_TIMEOUT
    record(category, case, ok)
    assert 400 <= answer.status < 500, f"{case}: {answer.describe()}"
    if status is not None:
        assert answer.status == status, f"{case}: {answer.describe()}"
    assert answer.elapsed < REQUEST_TIMEOUT, f"{case}: took {answer.elapsed:.2f} s"
    return answer


def accepted(case: str, answer: Answer) -> Answer:
    """A positive control: the same path with nothing wrong must succeed."""
    assert answer.status in (200, 204), f"control {case}: {answer.describe()}"
    assert answer.elapsed < REQUEST_TIMEOUT, f"control {case}: took {answer.elapsed:.2f} s"
    return answer


def assert_no_oracle(route: str, answers: dict[str, Answer]) -> None:
    """Every rejected token on ``route`` looks the same to the client."""
    groups: dict[Any, list[str]] = {}
    for case, answer in answers.items():
        groups.setdefault(answer.comparable(), []).append(case)
    assert len(groups) == 1, f"{route}: {len(groups)} distinguishable answers: " + "; ".join(
        f"{cases[:4]} -> {key[0]} {key[1][:80]!r}" for key, cases in groups.items()
    )


# --- the arsenal: real tokens of a victim, and the stack's keys ----------------------------------


@dataclass
class Case:
    name: str
    token: str
    cookies: dict[str, str] | None = None  # None: the victim's fingerprint cookie
    cookie_header: str | None = None  # a raw Cookie header instead (duplicates)


@dataclass
class Arsenal:
    """One stack's victim session and signing keys, and token builders around them."""

    edge: Edge
    victim: Account
    login: Login
    access_key: PrivateKeyEntry
    refresh_key: PrivateKeyEntry
    jwks_text: bytes
    _serial: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    @property
    def alg(self) -> str:
        return self.access_key.alg

    def access_header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.alg, "kid": self.access_key.kid, "typ": "at+jwt"}
        return apply_changes(header, changes)

    def access_claims(self, **changes: Any) -> dict[str, Any]:
        now = self.edge.now()
        claims = dict(self.login.claims)
        claims.update(iat=now, exp=now + 600, jti=f"forged-{next(self._serial)}")
        return apply_changes(claims, changes)

    def access(
        self,
        *,
        header: dict[str, Any] | bytes | None = None,
        claims: dict[str, Any] | bytes | None = None,
        key: PrivateKeyEntry | None = None,
    ) -> str:
        return forge(
            self.access_header() if header is None else header,
            self.access_claims() if claims is None else claims,
            key=key or self.access_key,
        )

    def refresh_claims(self, login: Login, **changes: Any) -> dict[str, Any]:
        return apply_changes(claims_of(login.refresh), changes)

    def refresh_header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "HS256", "kid": self.refresh_key.kid, "typ": "rt+jwt"}
        return apply_changes(header, changes)

    def bearer(self, case: Case, method: str = "GET", path: str = "/me") -> Answer:
        if case.cookie_header is not None:
            return self.edge.send(
                method, path, bearer=case.token, headers={"Cookie": case.cookie_header}
            )
        cookies = (
            {FINGERPRINT_COOKIE: self.login.fingerprint} if case.cookies is None else case.cookies
        )
        return self.edge.send(method, path, bearer=case.token, cookies=cookies or None)


def login_answer(
    edge: Edge, username: str, password: str, source_ip: str, **headers: str
) -> Answer:
    return edge.send(
        "POST",
        "/auth/login",
        json_body={"username": username, "password": password},
        source_ip=source_ip,
        headers=headers or None,
    )
