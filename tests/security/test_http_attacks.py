"""The attack suite at the HTTP edge: what a client on the network can try against the local
stack (``python -m devserver``: the template's routes, the real Lambda authorizer and handlers,
API Gateway HTTP API semantics), grouped by category.

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

import base64
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from tests.security.conftest import ALLOWED_ORIGIN, SEC_ADMIN, SEC_ADMIN_PASSWORD
from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    JWKS_PARAMETER,
    REFRESH_COOKIE,
    REQUEST_TIMEOUT,
    Account,
    Answer,
    Edge,
    Login,
    b64url,
    b64url_decode,
    claims_of,
    forge,
    fresh_source_ip,
)
from tests.security.secrets_registry import REGISTRY
from tests.security.tally import record
from tokencore.keys import generate_key
from tokencore.keys.jwk import PrivateKeyEntry, public_jwk

pytestmark = pytest.mark.e2e

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
DROP = object()  # a claim or header value meaning "leave it out"
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
        return _apply(header, changes)

    def access_claims(self, **changes: Any) -> dict[str, Any]:
        now = self.edge.now()
        claims = dict(self.login.claims)
        claims.update(iat=now, exp=now + 600, jti=f"forged-{next(self._serial)}")
        return _apply(claims, changes)

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
        return _apply(claims_of(login.refresh), changes)

    def refresh_header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "HS256", "kid": self.refresh_key.kid, "typ": "rt+jwt"}
        return _apply(header, changes)

    def bearer(self, case: Case, method: str = "GET", path: str = "/me") -> Answer:
        if case.cookie_header is not None:
            return self.edge.send(
                method, path, bearer=case.token, headers={"Cookie": case.cookie_header}
            )
        cookies = (
            {FINGERPRINT_COOKIE: self.login.fingerprint} if case.cookies is None else case.cookies
        )
        return self.edge.send(method, path, bearer=case.token, cookies=cookies or None)


def _apply(mapping: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is DROP:
            mapping.pop(name, None)
        else:
            mapping[name] = value
    return mapping


@pytest.fixture(scope="module")
def arsenals(edges: dict[str, Edge]) -> dict[str, Arsenal]:
    built = {}
    for name, edge in edges.items():
        victim = edge.new_account(prefix="victim")
        login = edge.login(victim)
        access = edge.key_set("access").active
        refresh = edge.key_set("refresh").active
        jwks = edge.send("GET", "/.well-known/jwks.json").body
        built[name] = Arsenal(edge, victim, login, access, refresh, jwks)
    return built


@pytest.fixture(params=EDGES)
def arsenal(request: pytest.FixtureRequest, arsenals: dict[str, Arsenal]) -> Arsenal:
    return arsenals[request.param]


# --- 1. signature and algorithm -----------------------------------------------------------------


def _public_key_encodings(arsenal: Arsenal) -> dict[str, bytes]:
    """Every way an attacker might feed our public key to HMAC (key confusion)."""
    public = arsenal.access_key.verification_key()
    material = public.key
    assert not isinstance(material, bytes)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    encodings = {
        "pem": material.public_bytes(serialization.Encoding.PEM, spki),
        "pem-no-newline": material.public_bytes(serialization.Encoding.PEM, spki).rstrip(b"\n"),
        "der": material.public_bytes(serialization.Encoding.DER, spki),
        "jwk": json.dumps(public_jwk(public)).encode(),
        "jwks-as-served": arsenal.jwks_text,
    }
    if isinstance(material, rsa.RSAPublicKey):
        encodings["pem-pkcs1"] = material.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
        encodings["modulus"] = material.public_numbers().n.to_bytes(256, "big")
    if isinstance(material, ec.EllipticCurvePublicKey):
        encodings["point"] = material.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return encodings


def signature_attacks(arsenal: Arsenal) -> list[Case]:
    cases: list[Case] = []
    kid = arsenal.access_key.kid
    claims = arsenal.access_claims()
    valid = arsenal.access(claims=claims)
    head, payload, signature = valid.split(".")
    raw_signature = b64url_decode(signature)
    other = arsenal.access()  # another validly signed token
    for alg in ("none", "None", "NONE", "nOnE"):
        for with_kid in (True, False):
            header = {"alg": alg, "typ": "at+jwt", **({"kid": kid} if with_kid else {})}
            label = f"alg {alg}{' with our kid' if with_kid else ''}"
            cases.append(Case(f"{label}, empty signature", forge(header, claims, signature=b"")))
        cases.append(
            Case(
                f"alg {alg} with the original signature",
                forge({"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, signature=raw_signature),
            )
        )
    for label, secret in _public_key_encodings(arsenal).items():
        header = {"alg": "HS256", "kid": kid, "typ": "at+jwt"}
        cases.append(
            Case(f"key confusion HS256 with the {label}", forge(header, claims, secret=secret))
        )
    cases.append(
        Case(
            "HS256 with an empty secret",
            forge(arsenal.access_header(alg="HS256"), claims, secret=b""),
        )
    )
    for alg in ("HS384", "HS512", "RS384", "RS512", "PS256", "ES384", "ES512", "EdDSA", "rs256"):
        cases.append(
            Case(
                f"alg {alg} on our {arsenal.alg} key",
                forge(arsenal.access_header(alg=alg), claims, key=arsenal.access_key),
            )
        )
    swapped = "ES256" if arsenal.alg == "RS256" else "RS256"
    cases.append(
        Case(
            f"alg {swapped} on our {arsenal.alg} key",
            forge(arsenal.access_header(alg=swapped), claims, key=arsenal.access_key),
        )
    )
    cases += [
        Case("stripped signature (empty third segment)", f"{head}.{payload}."),
        Case("no signature segment", f"{head}.{payload}"),
        Case("four segments", f"{head}.{payload}.{signature}.{signature}"),
        Case("another token's signature", f"{head}.{payload}.{other.split('.')[2]}"),
        Case(
            "signature truncated to half",
            f"{head}.{payload}.{b64url(raw_signature[: len(raw_signature) // 2])}",
        ),
        Case("signature with one flipped bit", f"{head}.{payload}.{b64url(_flip(raw_signature))}"),
        Case(
            "signature with a byte appended", f"{head}.{payload}.{b64url(raw_signature + b'\x00')}"
        ),
        Case(
            "all-zero signature of the right length",
            f"{head}.{payload}.{b64url(bytes(len(raw_signature)))}",
        ),
        Case(
            "payload changed under a valid signature",
            f"{head}.{_segment(arsenal.access_claims(roles=['admin', 'user']))}.{signature}",
        ),
        Case(
            "JWS JSON serialization",
            json.dumps({"protected": head, "payload": payload, "signature": signature}),
        ),
        Case("five segments (JWE shape)", f"{head}.{payload}.{signature}.{payload}.{signature}"),
        Case("base64 padding in the segments", f"{head}==.{payload}.{signature}"),
    ]
    attacker = generate_key(arsenal.alg)
    cases.append(
        Case(
            "signed by an attacker's key under our kid",
            forge(arsenal.access_header(), claims, key=_with_kid(attacker, kid)),
        )
    )
    if arsenal.alg == "ES256":
        # Psychic signatures (CVE-2022-21449): r = s = 0 and friends must never verify.
        n = P256_ORDER
        for label, (r, s) in {
            "r = s = 0": (0, 0),
            "r = s = n": (n, n),
            "r = 0, s = 1": (0, 1),
            "r = 1, s = 0": (1, 0),
            "r = n, s = 1": (n, 1),
            "r = s = n + 1": (n + 1, n + 1),
        }.items():
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            cases.append(
                Case(
                    f"psychic ECDSA {label}", forge(arsenal.access_header(), claims, signature=raw)
                )
            )
        cases.append(
            Case(
                "ECDSA signature in DER instead of raw r||s",
                forge(arsenal.access_header(), claims, signature=encode_dss_signature(0, 0)),
            )
        )
    else:
        for label, raw in {
            "RSA signature 0": bytes(256),
            "RSA signature 1": (1).to_bytes(256, "big"),
            "RSA signature of 255 bytes": b"\xff" * 255,
        }.items():
            cases.append(Case(label, forge(arsenal.access_header(), claims, signature=raw)))
    return cases


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _with_kid(entry: PrivateKeyEntry, kid: str) -> PrivateKeyEntry:
    return PrivateKeyEntry(kid, entry.alg, entry.key, entry.status)


def run_bearer_category(category: str, arsenal: Arsenal, cases: list[Case]) -> None:
    answers = {}
    for case in cases:
        answers[case.name] = refused(
            category, f"{arsenal.edge.name}: {case.name}", arsenal.bearer(case), status=403
        )
    assert_no_oracle(f"{arsenal.edge.name} GET /me", answers)


def test_signature_and_algorithm_attacks_are_refused(arsenal: Arsenal) -> None:
    accepted("re-signed unchanged", arsenal.bearer(Case("control", arsenal.access())))
    run_bearer_category("signature", arsenal, signature_attacks(arsenal))


# --- 2. header injection ------------------------------------------------------------------------


class Trap:
    """An HTTP server that records every request: a jku or x5u must never be fetched."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    server = Trap()
    yield server
    server.close()


def _self_signed(entry: PrivateKeyEntry) -> str:
    """An x5c member: the attacker's own certificate for the attacker's key."""
    assert not isinstance(entry.key, bytes)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokencore attacker")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(entry.key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(entry.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def header_attacks(arsenal: Arsenal, trap_url: str) -> list[Case]:
    claims = arsenal.access_claims()
    our_kid = arsenal.access_key.kid
    attacker = generate_key(arsenal.alg)
    attacker_jwk = public_jwk(attacker.verification_key())
    signed = lambda header, key=None: forge(header, claims, key=key or arsenal.access_key)  # noqa: E731
    h = arsenal.access_header
    return [
        Case("kid path traversal", signed(h(kid="../../../../etc/passwd"))),
        Case("kid SQL injection", signed(h(kid="' OR '1'='1"))),
        Case("kid with a NUL", signed(h(kid=our_kid + "\u0000"))),
        Case("kid empty", signed(h(kid=""))),
        Case("kid missing", signed(h(kid=DROP))),
        Case("kid null", signed(h(kid=None))),
        Case("kid a number", signed(h(kid=12345))),
        Case("kid a list", signed(h(kid=[our_kid]))),
        Case("kid an object", signed(h(kid={"kid": our_kid}))),
        Case("kid 2000 characters", signed(h(kid="k" * 2000))),
        Case("kid in upper case", signed(h(kid=our_kid.upper()))),
        Case("kid with a trailing space", signed(h(kid=our_kid + " "))),
        Case("kid of the refresh HMAC key", signed(h(kid=arsenal.refresh_key.kid))),
        Case("kid unknown (a fresh key's)", signed(h(kid=attacker.kid), attacker)),
        Case("jku to an attacker URL", signed(h(jku=f"{trap_url}/jwks.json"))),
        Case(
            "jku with an attacker key",
            signed(h(kid=attacker.kid, jku=f"{trap_url}/a.json"), attacker),
        ),
        Case("x5u to an attacker URL", signed(h(x5u=f"{trap_url}/cert.pem"))),
        Case(
            "jwk: the attacker's key embedded",
            signed(h(kid=attacker.kid, jwk=attacker_jwk), attacker),
        ),
        Case(
            "jwk: attacker key under our kid",
            signed(h(jwk={**attacker_jwk, "kid": our_kid}), _with_kid(attacker, our_kid)),
        ),
        Case(
            "jwk: our own public key embedded",
            signed(h(jwk=public_jwk(arsenal.access_key.verification_key()))),
        ),
        Case(
            "x5c: attacker's self-signed certificate",
            signed(h(kid=attacker.kid, x5c=[_self_signed(attacker)]), attacker),
        ),
        Case("x5t thumbprint", signed(h(x5t="AAAA"))),
        Case("crit [exp]", signed(h(crit=["exp"]))),
        Case("crit empty", signed(h(crit=[]))),
        Case("crit b64 with b64 false", signed(h(crit=["b64"], b64=False))),
        Case("b64 false", signed(h(b64=False))),
        Case("typ JWT", signed(h(typ="JWT"))),
        Case("typ missing", signed(h(typ=DROP))),
        Case("typ null", signed(h(typ=None))),
        Case("typ rt+jwt", signed(h(typ="rt+jwt"))),
        Case("typ at+jwt with a parameter", signed(h(typ="at+jwt; charset=utf-8"))),
        Case("cty JWT (nested token)", signed(h(cty="JWT"))),
        Case("zip DEF", signed(h(zip="DEF"))),
        Case("an unknown header member", signed(h(foo="bar"))),
        Case("enc (JWE member)", signed(h(enc="A256GCM"))),
        Case(
            "duplicate alg member",
            _raw_header(arsenal, '{"alg":"none","alg":"%s","kid":"%s","typ":"at+jwt"}'),
        ),
        Case(
            "duplicate kid member",
            _raw_header(arsenal, '{"alg":"%s","kid":"attacker","kid":"%s","typ":"at+jwt"}'),
        ),
        Case("header is a JSON array", forge(b'["RS256"]', claims, key=arsenal.access_key)),
        Case("header is not JSON", forge(b"alg=RS256", claims, key=arsenal.access_key)),
        Case(
            "header with a UTF-8 BOM",
            _raw_header(arsenal, '\ufeff{"alg":"%s","kid":"%s","typ":"at+jwt"}'),
        ),
        Case(
            "header with trailing data",
            _raw_header(arsenal, '{"alg":"%s","kid":"%s","typ":"at+jwt"}{}'),
        ),
    ]


def _raw_header(arsenal: Arsenal, template: str) -> str:
    """A header given as JSON text (duplicate members, a BOM, trailing data), validly signed."""
    text = template % (arsenal.alg, arsenal.access_key.kid)
    return forge(text.encode(), arsenal.access_claims(), key=arsenal.access_key)


def test_header_injection_attacks_are_refused_and_nothing_is_fetched(
    arsenal: Arsenal, trap: Trap
) -> None:
    accepted(
        "typ application/at+jwt (RFC 9068 allows the prefix)",
        arsenal.bearer(
            Case("control", arsenal.access(header=arsenal.access_header(typ="application/at+jwt")))
        ),
    )
    run_bearer_category("header", arsenal, header_attacks(arsenal, trap.url))
    assert trap.hits == [], f"the stack fetched attacker URLs: {trap.hits}"


# --- 3. claims ----------------------------------------------------------------------------------


def claim_attacks(arsenal: Arsenal) -> list[Case]:
    now = arsenal.edge.now()
    ours = arsenal.login.claims
    c = arsenal.access_claims
    signed = lambda claims: arsenal.access(claims=claims)  # noqa: E731
    cases = [
        Case("exp past the leeway", signed(c(exp=now - LEEWAY - MARGIN))),
        Case("exp long past", signed(c(exp=now - 86_400, iat=now - 90_000))),
        Case("nbf past the leeway", signed(c(nbf=now + LEEWAY + AHEAD))),
        Case("iat in the future past the leeway", signed(c(iat=now + LEEWAY + AHEAD))),
        Case("exp as a string", signed(c(exp=str(now + 600)))),
        Case("exp true", signed(c(exp=True))),
        Case("exp null", signed(c(exp=None))),
        Case("exp a list", signed(c(exp=[now + 600]))),
        Case("exp an object", signed(c(exp={"$numberLong": now + 600}))),
        Case("exp overflowing (1e400)", _raw_claims(arsenal, '"exp":1e400')),
        Case("exp 400 digits", _raw_claims(arsenal, '"exp":' + "9" * 400)),
        Case("exp NaN", _raw_claims(arsenal, '"exp":NaN')),
        Case("exp Infinity", _raw_claims(arsenal, '"exp":Infinity')),
        Case("exp negative", signed(c(exp=-1))),
        Case("iat as a string", signed(c(iat=str(now)))),
        Case("nbf as a string", signed(c(nbf=str(now)))),
        Case("nbf null", signed(c(nbf=None))),
        Case("iss of another issuer", signed(c(iss="https://evil.example.com"))),
        Case("iss with a trailing slash", signed(c(iss=ours["iss"] + "/"))),
        Case("iss in upper case", signed(c(iss=ours["iss"].upper()))),
        Case(
            "iss https instead of http", signed(c(iss=ours["iss"].replace("http://", "https://")))
        ),
        Case("iss as a list", signed(c(iss=[ours["iss"]]))),
        Case("iss null", signed(c(iss=None))),
        Case("aud of another API", signed(c(aud="another-api"))),
        Case("aud list without ours", signed(c(aud=["another-api"]))),
        Case("aud empty list", signed(c(aud=[]))),
        Case("aud list with ours and a number", signed(c(aud=[ours["aud"], 5]))),
        Case("aud a number", signed(c(aud=5))),
        Case("aud in upper case", signed(c(aud=ours["aud"].upper()))),
        Case("sub empty", signed(c(sub=""))),
        Case("sub a number", signed(c(sub=12345))),
        Case("sub 300 characters", signed(c(sub="u" * 300))),
        Case("sid a number", signed(c(sid=5))),
        Case("jti a list", signed(c(jti=["x"]))),
        Case("token_use refresh", signed(c(token_use="refresh"))),
        Case("token_use ACCESS", signed(c(token_use="ACCESS"))),
        Case("token_use a number", signed(c(token_use=1))),
        Case("roles a string", signed(c(roles="admin"))),
        Case("roles with a number", signed(c(roles=["user", 1]))),
        Case("roles an object", signed(c(roles={"admin": True}))),
        Case("roles with an empty name", signed(c(roles=[""]))),
        Case("email a number", signed(c(email=5))),
        Case("fgp a number", signed(c(fgp=5))),
        Case(
            "payload is a JSON array", forge(arsenal.access_header(), b"[]", key=arsenal.access_key)
        ),
        Case(
            "payload is not JSON",
            forge(arsenal.access_header(), b"sub=admin", key=arsenal.access_key),
        ),
        Case(
            "payload is not UTF-8",
            forge(arsenal.access_header(), b'{"sub":"\xff"}', key=arsenal.access_key),
        ),
        Case(
            "payload with a UTF-8 BOM",
            forge(
                arsenal.access_header(),
                "\ufeff".encode() + json.dumps(c()).encode(),
                key=arsenal.access_key,
            ),
        ),
        Case(
            "payload with trailing data",
            forge(
                arsenal.access_header(), json.dumps(c()).encode() + b" {}", key=arsenal.access_key
            ),
        ),
        Case(
            "duplicate exp (expired first)",
            _raw_claims(arsenal, f'"exp":{now - 86_400},"exp":{now + 600}'),
        ),
        Case(
            "duplicate exp (expired last)",
            _raw_claims(arsenal, f'"exp":{now + 600},"exp":{now - 86_400}'),
        ),
        Case("duplicate sub", _raw_claims(arsenal, '"sub":"someone-else"', keep_sub=True)),
        Case(
            "a claim nested 2000 deep",
            forge(
                arsenal.access_header(),
                json.dumps(c()).encode()[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
                key=arsenal.access_key,
            ),
        ),
        Case("token over 8 KB", signed(c(pad="p" * 8200))),
        # The fingerprint binding: the token is bound to the victim's __Host-fgp cookie.
        Case("fingerprint cookie missing", arsenal.access(), cookies={}),
        Case(
            "fingerprint cookie of another browser",
            arsenal.access(),
            cookies={FINGERPRINT_COOKIE: "A" * 43},
        ),
        Case(
            "fingerprint cookie set to the claim (the hash)",
            arsenal.access(),
            cookies={FINGERPRINT_COOKIE: ours["fgp"]},
        ),
        Case("fingerprint cookie empty", arsenal.access(), cookies={FINGERPRINT_COOKIE: ""}),
    ]
    for name in ("iss", "aud", "sub", "jti", "sid", "iat", "exp", "token_use"):
        cases.append(Case(f"{name} missing", signed(c(**{name: DROP}))))
    # Two fingerprint cookies: ambiguous, so refused (a __Host- cookie cannot be set twice).
    fgp = arsenal.login.fingerprint
    twice = f"{FINGERPRINT_COOKIE}={fgp}; {FINGERPRINT_COOKIE}={fgp}"
    cases.append(Case("fingerprint cookie twice", arsenal.access(), cookie_header=twice))
    return cases


def _raw_claims(arsenal: Arsenal, members: str, *, keep_sub: bool = False) -> str:
    """A payload with ``members`` spliced in as raw JSON text (duplicates, NaN, big numbers)."""
    base = arsenal.access_claims()
    names = {part.split(":", 1)[0].strip('"') for part in members.split(",")}
    if keep_sub:
        names.discard("sub")
    for name in names:
        base.pop(name, None)
    text = json.dumps(base, separators=(",", ":"))[:-1] + "," + members + "}"
    return forge(arsenal.access_header(), text.encode(), key=arsenal.access_key)


def test_claim_attacks_are_refused(arsenal: Arsenal) -> None:
    now = arsenal.edge.now()
    c = arsenal.access_claims
    for label, claims in {
        "exp inside the leeway": c(exp=now - INSIDE),
        "nbf inside the leeway": c(nbf=now + LEEWAY - MARGIN),
        "iat in the future inside the leeway": c(iat=now + LEEWAY - MARGIN),
        "aud as a list holding ours": c(aud=["another-api", arsenal.login.claims["aud"]]),
    }.items():
        accepted(label, arsenal.bearer(Case(label, arsenal.access(claims=claims))))
    run_bearer_category("claims", arsenal, claim_attacks(arsenal))


# --- 4. token-type confusion, retired and emergency-revoked keys ---------------------------------


def type_confusion_bearer_attacks(arsenal: Arsenal) -> list[Case]:
    login = arsenal.login
    refresh_claims = arsenal.refresh_claims(login)
    access_claims = arsenal.access_claims()
    retired = generate_key(arsenal.alg)
    return [
        Case("a real refresh token as the bearer token", login.refresh),
        Case(
            "access claims signed with the refresh HMAC key",
            forge(
                arsenal.access_header(alg="HS256", kid=arsenal.refresh_key.kid),
                access_claims,
                key=arsenal.refresh_key,
            ),
        ),
        Case(
            "refresh claims signed with the access key",
            forge(arsenal.access_header(typ="rt+jwt"), refresh_claims, key=arsenal.access_key),
        ),
        Case(
            "refresh claims with typ at+jwt, access key",
            forge(arsenal.access_header(), refresh_claims, key=arsenal.access_key),
        ),
        Case(
            "signed by a retired key (no longer published)",
            arsenal.access(header=arsenal.access_header(kid=retired.kid), key=retired),
        ),
    ]


def test_token_type_confusion_is_refused_at_the_bearer_routes(arsenal: Arsenal) -> None:
    run_bearer_category("token_type", arsenal, type_confusion_bearer_attacks(arsenal))


def grant_type_attacks(arsenal: Arsenal, login: Login) -> list[Case]:
    refresh_claims = arsenal.refresh_claims(login)
    hs = arsenal.refresh_header
    return [
        Case("an access token as the refresh token", login.access),
        Case(
            "refresh claims signed with the access key (RS/ES)",
            forge(arsenal.access_header(typ="rt+jwt"), refresh_claims, key=arsenal.access_key),
        ),
        Case(
            "refresh key, typ at+jwt",
            forge(hs(typ="at+jwt"), refresh_claims, key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, token_use access",
            forge(hs(), {**refresh_claims, "token_use": "access"}, key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, access claims",
            forge(hs(), arsenal.access_claims(), key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, aud of the API",
            forge(hs(), {**refresh_claims, "aud": login.claims["aud"]}, key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, gen a string",
            forge(hs(), {**refresh_claims, "gen": "1"}, key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, gen negative",
            forge(hs(), {**refresh_claims, "gen": -1}, key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, gen missing",
            forge(hs(), _apply(dict(refresh_claims), {"gen": DROP}), key=arsenal.refresh_key),
        ),
        Case(
            "refresh key, expired",
            forge(
                hs(),
                {**refresh_claims, "exp": arsenal.edge.now() - LEEWAY - MARGIN},
                key=arsenal.refresh_key,
            ),
        ),
        Case("refresh key, alg none", forge(hs(alg="none"), refresh_claims, signature=b"")),
        Case(
            "refresh token HMAC'd with a guessed secret",
            forge(hs(), refresh_claims, secret=b"secret"),
        ),
        Case(
            "refresh token HMAC'd with the JWKS",
            forge(hs(), refresh_claims, secret=arsenal.jwks_text),
        ),
        Case("refresh token with a flipped signature bit", _flip_last(login.refresh)),
        Case(
            "refresh token of an unknown refresh kid",
            forge(hs(kid="rt-0000000000000000"), refresh_claims, key=arsenal.refresh_key),
        ),
        Case("garbage", "garbage"),
        Case("empty-ish", "a.b.c"),
    ]


def _flip_last(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = b64url_decode(signature)
    return f"{head}.{payload}.{b64url(raw[:-1] + bytes([raw[-1] ^ 1]))}"


def test_token_type_confusion_is_refused_at_refresh_and_every_answer_is_the_same(
    arsenal: Arsenal,
) -> None:
    edge = arsenal.edge
    login = edge.login(edge.new_account())
    answers = {}
    for case in grant_type_attacks(arsenal, login):
        answer = refused(
            "token_type",
            f"{edge.name} refresh: {case.name}",
            edge.refresh(case.token, login.fingerprint),
            status=401,
        )
        assert answer.json() == INVALID_GRANT
        answers[case.name] = answer
    assert_no_oracle(f"{edge.name} POST /auth/refresh", answers)
    # None of them touched the session: its own refresh token still rotates.
    accepted("the genuine refresh token", edge.refresh(login.refresh, login.fingerprint))


def test_a_key_removed_from_the_jwks_stops_verifying_within_the_cache_ttl(
    sec: Edge, arsenals: dict[str, Arsenal]
) -> None:
    """Emergency key revocation without the CLI: a key is published in the public JWKS
    parameter, a token it signed is accepted, the key is removed again, and the token is
    refused once the verifiers' key cache expires (JWKS_CACHE_TTL_SECONDS, 2 s on this stack).
    ``tokenctl`` has no revoke-key command yet (issue 8); this exercises the bound it will
    rely on."""
    arsenal = arsenals["sec"]
    ssm = sec.aws("ssm")
    original = ssm.get_parameter(Name=JWKS_PARAMETER)["Parameter"]["Value"]
    emergency = generate_key("RS256")
    published = json.loads(original)
    published["keys"].append(public_jwk(emergency.verification_key()))
    ssm.put_parameter(
        Name=JWKS_PARAMETER, Value=json.dumps(published), Type="String", Overwrite=True
    )
    token = arsenal.access(header=arsenal.access_header(kid=emergency.kid), key=emergency)
    try:
        accepted(
            "a token of a newly published key (refetch on unknown kid)",
            arsenal.bearer(Case("new key", token)),
        )
    finally:
        ssm.put_parameter(Name=JWKS_PARAMETER, Value=original, Type="String", Overwrite=True)
    sec.stack.advance_clock(2 + 0.5)  # past the key cache's TTL (2 s on this stack)
    answer = arsenal.bearer(Case("revoked key", token))
    refused(
        "token_type",
        "sec: a token of an emergency-revoked key (after the cache TTL)",
        answer,
        status=403,
    )
    refused(
        "token_type", "sec: the same token again", arsenal.bearer(Case("again", token)), status=403
    )
    accepted("the stack's own key keeps working", arsenal.bearer(Case("own", arsenal.access())))


# --- 5. refresh rotation --------------------------------------------------------------------------


def _rotated(edge: Edge, token: str, fingerprint: str) -> str:
    answer = accepted("refresh", edge.refresh(token, fingerprint))
    value = answer.cookies[REFRESH_COOKIE][0]
    assert value
    assert value != token
    return value


def _assert_grant_refused(edge: Edge, case: str, answer: Answer) -> None:
    refused("rotation", f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == INVALID_GRANT
    for name in (REFRESH_COOKIE, FINGERPRINT_COOKIE):
        value, attributes = answer.cookies[name]
        assert value == ""
        assert attributes["max-age"] == "0"


SENSITIVE_PROBE = ("DELETE", "/auth/sessions/probe-session-that-does-not-exist")


def _sensitive(edge: Edge, login: Login) -> Answer:
    """A sensitive route (always checks the session) that changes nothing if it is allowed."""
    method, path = SENSITIVE_PROBE
    return edge.send(
        method, path, bearer=login.access, cookies={FINGERPRINT_COOKIE: login.fingerprint}
    )


def test_replaying_a_rotated_refresh_token_revokes_the_session(strict: Edge) -> None:
    """No grace window (strict): the first replay is reuse; the whole session dies with it."""
    login = strict.login(strict.new_account())
    successor = _rotated(strict, login.refresh, login.fingerprint)
    _assert_grant_refused(
        strict,
        "replay of the rotated refresh token",
        strict.refresh(login.refresh, login.fingerprint),
    )
    _assert_grant_refused(
        strict, "the successor after the reuse", strict.refresh(successor, login.fingerprint)
    )
    refused(
        "rotation",
        "strict: the access token after the reuse (every request checks)",
        strict.me(login.access, login.fingerprint),
        status=403,
    )


def test_the_grace_window_returns_the_same_successor_and_never_a_branch(sec: Edge) -> None:
    login = sec.login(sec.new_account())
    first = _rotated(sec, login.refresh, login.fingerprint)
    # The previous token inside the window: the very same successor, byte for byte.
    for attempt in range(3):
        again = accepted(f"grace replay {attempt}", sec.refresh(login.refresh, login.fingerprint))
        assert again.cookies[REFRESH_COOKIE][0] == first
    # The successor rotates on; the original is now two generations old: reuse, even in the window.
    second = _rotated(sec, first, login.fingerprint)
    _assert_grant_refused(
        sec,
        "a token two generations old inside the grace window",
        sec.refresh(login.refresh, login.fingerprint),
    )
    _assert_grant_refused(
        sec, "the current token after the reuse", sec.refresh(second, login.fingerprint)
    )
    refused(
        "rotation",
        "sec: the access token on a sensitive route after the reuse",
        _sensitive(sec, login),
        status=403,
    )


@pytest.mark.parametrize("edge_name", EDGES)
def test_a_refresh_token_replayed_after_logout_is_refused(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    accepted("logout", edge.send("POST", "/auth/logout", cookies={REFRESH_COOKIE: login.refresh}))
    _assert_grant_refused(
        edge, "refresh after logout", edge.refresh(login.refresh, login.fingerprint)
    )
    refused(
        "rotation",
        f"{edge.name}: the access token on a sensitive route after logout",
        _sensitive(edge, login),
        status=403,
    )


@pytest.mark.parametrize("edge_name", EDGES)
def test_concurrent_refreshes_never_branch_the_session(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    """Eight refreshes of one token at once: with a grace window all get the same successor;
    without one, at most one succeeds and then the reuse revokes the session. Never two
    different live successors."""
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    barrier = threading.Barrier(8)

    def attempt(_: int) -> Answer:
        barrier.wait()
        return edge.refresh(login.refresh, login.fingerprint)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))
    assert all(a.elapsed < REQUEST_TIMEOUT * 3 for a in answers)
    successors = {a.cookies[REFRESH_COOKIE][0] for a in answers if a.status == 200}
    assert len(successors) <= 1, "two different successors: the lineage branched"
    statuses = sorted(a.status for a in answers)
    if edge_name == "sec":
        assert statuses == [200] * 8, statuses
    else:
        # No grace window: the first rotates, the next is reuse and revokes the session; the
        # refresh limit (3/60 here) turns the rest away with 429 before they reach the store.
        assert statuses.count(200) <= 1, statuses
        assert set(statuses) <= {200, 401, 429}, statuses
        for answer in answers:
            if answer.status != 200:
                refused("rotation", "strict: a concurrent replay without a grace window", answer)
        if 401 in statuses:
            # The reuse revoked the session: its access tokens are refused (every request
            # checks the session on this stack; a refresh would only meet the limit).
            winner = next(a for a in answers if a.status == 200)
            access = winner.json()["access_token"]
            refused(
                "rotation",
                "strict: the successor's access token after the concurrent reuse",
                edge.me(access, login.fingerprint),
                status=403,
            )


# --- 6. revocation propagation --------------------------------------------------------------------


def _after_revocation(edge: Edge, how: str, login: Login) -> None:
    """A revoked session: its refresh token is dead, its access token is refused where the
    session is checked (sensitive routes; every route on strict). On sec, sampling is off: the
    access token keeps working on ordinary routes until it expires (the hybrid design)."""
    _assert_grant_refused_as(
        edge, "revocation", f"refresh after {how}", edge.refresh(login.refresh, login.fingerprint)
    )
    refused(
        "revocation",
        f"{edge.name}: sensitive route after {how}",
        _sensitive(edge, login),
        status=403,
    )
    me = edge.me(login.access, login.fingerprint)
    if edge.name == "strict":
        refused("revocation", f"strict: GET /me after {how}", me, status=403)
    else:
        assert me.status == 200, "sampling off: ordinary routes trust the token until it expires"


def _assert_grant_refused_as(edge: Edge, category: str, case: str, answer: Answer) -> None:
    refused(category, f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == INVALID_GRANT


def _assert_login_refused(edge: Edge, case: str, answer: Answer) -> None:
    """The one answer of every failed login (unknown user, wrong password, disabled account)."""
    refused("revocation", f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "invalid username or password",
    }


def _admin(edge: Edge) -> Login:
    if edge.name == "sec":
        return edge.login(Account(SEC_ADMIN, SEC_ADMIN_PASSWORD, ""))
    return edge.login(edge.new_account(roles=("admin", "user"), prefix="admin"))


def test_a_stolen_bearer_token_cannot_log_its_owner_out(sec: Edge) -> None:
    """Logout is a public route (no authorizer), so it checks the fingerprint binding itself: a
    copied access token without its cookie names no session, and the answer is the same 204."""
    login = sec.login(sec.new_account())
    for label, cookies in (
        ("no fingerprint cookie", None),
        ("someone else's fingerprint", {FINGERPRINT_COOKIE: "A" * 43}),
    ):
        answer = sec.send("POST", "/auth/logout", bearer=login.access, cookies=cookies)
        assert answer.status == 204, f"{label}: {answer.describe()}"
        owner = sec.me(login.access, login.fingerprint)
        record("revocation", f"logout with a stolen bearer, {label}", owner.status == 200)
        accepted(f"the owner's session after: {label}", owner)


@pytest.mark.parametrize("edge_name", EDGES)
def test_every_kind_of_revocation_propagates(edge_name: str, edges: dict[str, Edge]) -> None:
    edge = edges[edge_name]
    # logout with the refresh cookie, and with the bearer token (and its fingerprint cookie)
    login = edge.login(edge.new_account())
    accepted("logout", edge.send("POST", "/auth/logout", cookies={REFRESH_COOKIE: login.refresh}))
    _after_revocation(edge, "logout (cookie)", login)
    login = edge.login(edge.new_account())
    bound = {FINGERPRINT_COOKIE: login.fingerprint}
    accepted("logout", edge.send("POST", "/auth/logout", bearer=login.access, cookies=bound))
    _after_revocation(edge, "logout (bearer)", login)
    # the user ends one of their sessions from another
    account = edge.new_account()
    target, other = edge.login(account), edge.login(account)
    accepted(
        "delete",
        edge.send(
            "DELETE",
            f"/auth/sessions/{target.session_id}",
            bearer=other.access,
            cookies={FINGERPRINT_COOKIE: other.fingerprint},
        ),
    )
    _after_revocation(edge, "DELETE /auth/sessions/{id}", target)
    # revoke-all ends every session, the caller's included
    account = edge.new_account()
    first, second = edge.login(account), edge.login(account)
    accepted(
        "revoke-all",
        edge.send(
            "POST",
            "/auth/sessions/revoke-all",
            bearer=second.access,
            cookies={FINGERPRINT_COOKIE: second.fingerprint},
        ),
    )
    _after_revocation(edge, "revoke-all (another session)", first)
    _after_revocation(edge, "revoke-all (the calling session)", second)
    # an admin revokes a user
    account = edge.new_account()
    victim, admin = edge.login(account), _admin(edge)
    accepted(
        "admin revoke",
        edge.send(
            "POST",
            f"/admin/users/{account.user_id}/revoke",
            bearer=admin.access,
            cookies={FINGERPRINT_COOKIE: admin.fingerprint},
        ),
    )
    _after_revocation(edge, "admin revoke", victim)
    # the operator disables the user (tokenctl disable-user, as `make ctl` runs it)
    account = edge.new_account()
    victim = edge.login(account)
    result = edge.stack.ctl("disable-user", account.username)
    assert result.returncode == 0, result.stderr
    _after_revocation(edge, "disable-user", victim)
    again = edge.send(
        "POST",
        "/auth/login",
        json_body={"username": account.username, "password": account.password},
        source_ip=fresh_source_ip(),
    )
    _assert_login_refused(edge, "login of a disabled user", again)
    # the password changes (through the user service, against the stack's table)
    account = edge.new_account()
    victim = edge.login(account)
    new_password = account.password + "-changed"
    REGISTRY.register(new_password, "password")
    edge.users().change_password(account.user_id, new_password)
    _after_revocation(edge, "password change", victim)
    old = edge.send(
        "POST",
        "/auth/login",
        json_body={"username": account.username, "password": account.password},
        source_ip=fresh_source_ip(),
    )
    _assert_login_refused(edge, "login with the old password", old)
    edge.login(Account(account.username, new_password, account.user_id))


# --- 7. brute force and rate limits ---------------------------------------------------------------


def _login_answer(
    edge: Edge, username: str, password: str, source_ip: str, **headers: str
) -> Answer:
    return edge.send(
        "POST",
        "/auth/login",
        json_body={"username": username, "password": password},
        source_ip=source_ip,
        headers=headers or None,
    )


# Limits count in fixed windows that turn with the stacks' clocks (wall clock plus what tests
# advanced): each test starts with at least this much of its window left, far longer than the
# test takes, so its attempts never straddle a window's end.
LOGIN_WINDOW_LEFT = 120  # of LOGIN_RATE_LIMIT's and LOGIN_IP_RATE_LIMIT's 300 s
REFRESH_WINDOW_LEFT = 45  # of REFRESH_RATE_LIMIT's 60 s


def _assert_rate_limited(case: str, answer: Answer, window: int) -> int:
    refused("rate_limits", case, answer, status=429)
    assert answer.json()["error"] == "rate_limited"
    retry = int(answer.header("Retry-After") or "0")
    assert 1 <= retry <= window, retry
    assert answer.header("Set-Cookie") is None
    return retry


def test_login_is_limited_per_username_whatever_its_spelling(sec: Edge) -> None:
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    account = sec.new_account()
    wrong = "not-the-password-of-" + account.username
    REGISTRY.register(wrong, "password")
    for attempt in range(5):  # LOGIN_RATE_LIMIT=5/300, each attempt from a new address
        answer = _login_answer(sec, account.username, wrong, fresh_source_ip())
        refused("rate_limits", f"sec: wrong password {attempt + 1}", answer, status=401)
    spellings = [
        account.username,
        account.username.upper(),
        account.username.title(),
        f"  {account.username}  ",
        "".join(
            chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in account.username
        ),  # fullwidth
    ]
    limited = {}
    for spelling in spellings:
        answer = _login_answer(sec, spelling, wrong, fresh_source_ip())
        _assert_rate_limited(f"sec: username spelled {spelling!r}", answer, 300)
        limited[spelling] = answer
    # While limited, the right password gets the very same answer: no oracle, no guessing.
    right = _login_answer(sec, account.username, account.password, fresh_source_ip())
    _assert_rate_limited("sec: the right password while limited", right, 300)
    for answer in [*limited.values(), right]:
        assert (answer.status, answer.body) == (right.status, right.body)


def test_login_is_limited_per_source_address_and_forwarding_headers_do_not_reset_it(
    sec: Edge,
) -> None:
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    address = fresh_source_ip()
    for n in range(12):  # LOGIN_IP_RATE_LIMIT=12/300: spraying twelve names from one address
        answer = _login_answer(sec, f"sprayed-name-{n}", "sprayed-password-x", address)
        refused("rate_limits", f"sec: password spraying {n + 1}", answer, status=401)
    _assert_rate_limited(
        "sec: the thirteenth name from one address",
        _login_answer(sec, "sprayed-name-12", "sprayed-password-x", address),
        300,
    )
    for header, value in {
        "X-Forwarded-For": "203.0.113.7",
        "X-Real-IP": "203.0.113.8",
        "Forwarded": "for=203.0.113.9",
        "True-Client-IP": "203.0.113.10",
    }.items():
        answer = _login_answer(
            sec, "sprayed-name-13", "sprayed-password-x", address, **{header: value}
        )
        _assert_rate_limited(f"sec: spoofed {header}", answer, 300)


def test_an_attacker_cannot_lock_a_victim_out_without_the_victim_noticing(sec: Edge) -> None:
    """The per-username limit is the one lever an attacker has over a victim. What it cannot
    do: end the victim's sessions (refresh is limited per user id from a verified token, not
    per name), block the victim's address, or lock the account silently or for long (the
    victim sees 429 rate_limited with Retry-After, never "wrong password", and the window is
    LOGIN_RATE_LIMIT's, here 300 s)."""
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    victim = sec.new_account()
    session = sec.login(victim, source_ip=fresh_source_ip())
    attacker_ip = fresh_source_ip()
    for n in range(8):
        answer = _login_answer(sec, victim.username, f"guess-number-{n}-for-victim", attacker_ip)
        assert answer.status in (401, 429)
        record("rate_limits", f"sec: attacker guess {n}", answer.status in (401, 429))
    # The victim's session is untouched: it refreshes and calls the API.
    successor = _rotated(sec, session.refresh, session.fingerprint)
    accepted("victim's API call", sec.me(session.access, session.fingerprint))
    # A fresh login from the victim is refused as rate limited (visible), for a bounded time.
    retry = _assert_rate_limited(
        "sec: victim's own login while the attacker holds the limit",
        _login_answer(sec, victim.username, victim.password, fresh_source_ip()),
        300,
    )
    assert retry <= 300
    # The attacker's address is limited for everyone it targets, not the victim's.
    other = sec.new_account()
    accepted(
        "another user from another address",
        _login_answer(sec, other.username, other.password, fresh_source_ip()),
    )
    # Garbage refresh tokens naming the victim never spend the victim's refresh allowance.
    for n in range(5):
        forged = forge(
            {"alg": "HS256", "typ": "rt+jwt"}, {"sub": victim.user_id, "n": n}, secret=b"guess"
        )
        refused(
            "rate_limits",
            f"sec: forged refresh token naming the victim {n}",
            sec.refresh(forged),
            status=401,
        )
    accepted("the victim's refresh still works", sec.refresh(successor, session.fingerprint))


def test_refresh_is_limited_per_user_and_a_limited_refresh_keeps_the_session(strict: Edge) -> None:
    strict.stack.fresh_window(60, needed=REFRESH_WINDOW_LEFT)
    login = strict.login(strict.new_account())
    token = login.refresh
    # Garbage tokens do not count against the user: only verified tokens reach the limiter.
    for n in range(4):
        refused(
            "rate_limits",
            f"strict: garbage refresh {n}",
            strict.refresh(f"garbage-{n}.a.b"),
            status=401,
        )
    for _ in range(3):  # REFRESH_RATE_LIMIT=3/60
        token = _rotated(strict, token, login.fingerprint)
    answer = strict.refresh(token, login.fingerprint)
    _assert_rate_limited("strict: the fourth refresh in the window", answer, 60)
    # 429 keeps the cookies (no Set-Cookie at all) and the session: every request checks it here.
    assert answer.header("Set-Cookie") is None
    accepted("the session is still active", strict.me(login.access, login.fingerprint))


# --- 8. cookies, CORS and headers -----------------------------------------------------------------


LOGIN_LINE = b"POST /auth/login HTTP/1.1\r\nHost: x\r\n"
UNLISTED_ORIGINS = [
    "https://evil.example.com",
    "https://app.example.com.evil.com",
    "https://evilapp.example.com",
    "http://app.example.com",
    "https://APP.example.com",
    "https://app.example.com/",
    "https://app.example.com:443",
    "null",
    "*",
]


def test_cookies_have_their_prefixes_and_attributes(sec: Edge) -> None:
    login = sec.login(sec.new_account())
    for answer in (login.answer, sec.refresh(login.refresh, login.fingerprint)):
        cookies = answer.cookies
        value, attributes = cookies[REFRESH_COOKIE]
        assert value
        assert attributes["path"] == "/auth"
        assert {"httponly", "secure"} <= set(attributes)
        assert attributes["samesite"] == "Strict"
        assert "domain" not in attributes
        assert int(attributes["max-age"]) > 0
        value, attributes = cookies[FINGERPRINT_COOKIE]
        assert attributes["path"] == "/"  # __Host-: Path=/, Secure, no Domain
        assert {"httponly", "secure"} <= set(attributes)
        assert attributes["samesite"] == "Strict"
        assert "domain" not in attributes
        assert answer.header("Cache-Control") == "no-store"
        assert answer.header("Pragma") == "no-cache"
        assert "refresh_token" not in answer.json()  # REFRESH_TOKEN_TRANSPORT=cookie


@pytest.mark.parametrize("edge_name", EDGES)
def test_no_unlisted_origin_ever_gets_cors_and_credentials(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    origins = UNLISTED_ORIGINS + ([ALLOWED_ORIGIN] if edge_name == "strict" else [])
    requests: list[tuple[str, Callable[[str], Answer]]] = [
        (
            "POST /auth/login",
            lambda o: edge.send(
                "POST",
                "/auth/login",
                json_body={"username": "x-unknown", "password": "y-unknown-pw"},
                headers={"Origin": o},
                source_ip=fresh_source_ip(),
            ),
        ),
        (
            "POST /auth/refresh",
            lambda o: edge.send(
                "POST", "/auth/refresh", headers={"Origin": o}, cookies={REFRESH_COOKIE: "garbage"}
            ),
        ),
        (
            "GET /me",
            lambda o: edge.send(
                "GET",
                "/me",
                headers={"Origin": o},
                bearer=login.access,
                cookies={FINGERPRINT_COOKIE: login.fingerprint},
            ),
        ),
        (
            "GET /.well-known/jwks.json",
            lambda o: edge.send("GET", "/.well-known/jwks.json", headers={"Origin": o}),
        ),
        (
            "OPTIONS /auth/refresh (preflight)",
            lambda o: edge.send(
                "OPTIONS",
                "/auth/refresh",
                headers={
                    "Origin": o,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            ),
        ),
    ]
    for origin in origins:
        for route, send in requests:
            answer = send(origin)
            cors = [
                name for name, _ in answer.headers if name.lower().startswith("access-control-")
            ]
            ok = not cors and answer.status < 500 and answer.elapsed < REQUEST_TIMEOUT
            record("cookies_cors_headers", f"{edge_name}: {route} from {origin}", ok)
            assert not cors, f"{route} from {origin!r}: {cors}"
            assert answer.status < 500
    if edge_name == "sec":
        # The one listed origin gets exactly itself back, with credentials, and Vary: Origin.
        answer = requests[0][1](ALLOWED_ORIGIN)
        assert answer.header("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
        assert answer.header("Access-Control-Allow-Credentials") == "true"
        assert "Origin" in (answer.header("Vary") or "")


@pytest.mark.parametrize("edge_name", EDGES)
def test_every_function_answer_carries_the_security_headers(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    """HSTS, nosniff, CSP and no-store on every answer a function gives, success or error
    (API Gateway's own 401/403/404/413 come from the gateway and carry none: HTTP APIs offer
    no gateway-response customization; see docs/security.md)."""
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    bearer = {"bearer": login.access, "cookies": {FINGERPRINT_COOKIE: login.fingerprint}}
    answers = {
        "login 200": login.answer,
        "login 400": edge.send(
            "POST", "/auth/login", body=b"[]", headers={"Content-Type": "application/json"}
        ),
        "login 401": _login_answer(edge, "unknown-user-x", "some-password-x", fresh_source_ip()),
        "login 413": edge.send(
            "POST",
            "/auth/login",
            body=b"{" + b" " * 17_000 + b"}",
            headers={"Content-Type": "application/json"},
        ),
        "login 415": edge.send(
            "POST", "/auth/login", body=b"{}", headers={"Content-Type": "text/plain"}
        ),
        "refresh 400": edge.send("POST", "/auth/refresh"),
        "refresh 401": edge.refresh("garbage"),
        "logout 204": edge.send("POST", "/auth/logout"),
        "me 200": edge.send("GET", "/me", **bearer),  # type: ignore[arg-type]
        "sessions 200": edge.send("GET", "/auth/sessions", **bearer),  # type: ignore[arg-type]
        "delete 404": edge.send("DELETE", "/auth/sessions/not-a-session-of-mine", **bearer),  # type: ignore[arg-type]
    }
    for name, answer in answers.items():
        headers = {key.lower(): value for key, value in answer.headers}
        missing = [h for h, v in SECURITY_HEADERS.items() if headers.get(h) != v]
        ok = not missing and headers.get("cache-control") == "no-store"
        record("cookies_cors_headers", f"{edge_name}: headers on {name}", ok)
        assert not missing, f"{name}: missing {missing}"
        assert headers.get("cache-control") == "no-store", name
        assert headers.get("pragma") == "no-cache", name
    jwks = edge.send("GET", "/.well-known/jwks.json")
    assert (jwks.header("Cache-Control") or "").startswith("public, max-age=")
    assert jwks.header("Strict-Transport-Security") == SECURITY_HEADERS["strict-transport-security"]
    body = jwks.json()
    assert all(set(key) >= {"kty", "kid", "alg"} for key in body["keys"])
    assert not any(member in key for key in body["keys"] for member in ("d", "p", "q", "k"))


def test_a_planted_refresh_cookie_never_mixes_sessions(sec: Edge) -> None:
    """Cookie tossing: two refresh cookies in one request (a sibling subdomain can set a
    ``__Secure-`` cookie with a longer Path, which browsers send first). The first one is the
    one used; a garbage or foreign first cookie is a plain refusal, never a mixed session."""
    victim = sec.login(sec.new_account())
    attacker = sec.login(sec.new_account())
    both = f"{REFRESH_COOKIE}=garbage.planted.cookie; {REFRESH_COOKIE}={victim.refresh}"
    answer = sec.send("POST", "/auth/refresh", headers={"Cookie": both})
    refused(
        "cookies_cors_headers", "sec: a planted garbage refresh cookie first", answer, status=401
    )
    planted = "; ".join(
        [
            f"{REFRESH_COOKIE}={attacker.refresh}",
            f"{REFRESH_COOKIE}={victim.refresh}",
            f"{FINGERPRINT_COOKIE}={victim.fingerprint}",
        ]
    )
    answer = accepted(
        "the first cookie is used", sec.send("POST", "/auth/refresh", headers={"Cookie": planted})
    )
    # The attacker's own session, nothing mixed.
    assert answer.json()["session_id"] == attacker.session_id
    assert claims_of(answer.json()["access_token"])["sub"] == attacker.user_id


# --- 9. oversize and malformed input --------------------------------------------------------------


def test_oversize_and_malformed_requests_are_refused(
    sec: Edge, arsenals: dict[str, Arsenal]
) -> None:
    edge = sec
    arsenal = arsenals["sec"]
    JSON = {"Content-Type": "application/json"}

    def login_body(body: bytes, headers: dict[str, str] | None = None) -> Answer:
        return edge.send(
            "POST",
            "/auth/login",
            body=body,
            headers=headers if headers is not None else JSON,
            source_ip=fresh_source_ip(),
        )

    def signed_in(
        method: str, path: str, bearer: str | None = arsenal.login.access, **options: Any
    ) -> Callable[[], Answer]:
        """A request with the user's fingerprint cookie and token (``bearer=None`` where the
        attack carries the token itself): what is attacked is the path or the headers."""
        cookies = {FINGERPRINT_COOKIE: arsenal.login.fingerprint}
        return lambda: edge.send(method, path, bearer=bearer, cookies=cookies, **options)

    nested = b'{"username":"a","password":"b","x":' + b"[" * 9 + b"]" * 9 + b"}"
    deep = b"[" * 8000 + b"]" * 8000
    cases: dict[str, tuple[Callable[[], Answer], int | None]] = {
        "body over 16 KiB": (
            lambda: login_body(b'{"username":"' + b"a" * 17_000 + b'","password":"x"}'),
            413,
        ),
        "declared 11 MB body": (
            lambda: edge.send(
                "POST",
                "/auth/login",
                headers={**JSON, "Content-Length": str(11 * 1024 * 1024)},
                body=None,
            ),
            413,
        ),
        "JSON nested 9 deep": (lambda: login_body(nested), 400),
        "JSON nested 8000 deep": (lambda: login_body(deep), 400),
        "invalid UTF-8": (lambda: login_body(b'{"username":"\xff\xfe","password":"x"}'), 400),
        "UTF-16 body": (
            lambda: login_body(
                '{"username":"a","password":"b"}'.encode("utf-16"),
                {"Content-Type": "application/json; charset=utf-16"},
            ),
            415,
        ),
        "charset latin-1": (
            lambda: login_body(
                b'{"username":"a","password":"b"}',
                {"Content-Type": "application/json; charset=latin-1"},
            ),
            415,
        ),
        "text/plain": (
            lambda: login_body(b'{"username":"a","password":"b"}', {"Content-Type": "text/plain"}),
            415,
        ),
        "form-urlencoded": (
            lambda: login_body(
                b"username=a&password=b", {"Content-Type": "application/x-www-form-urlencoded"}
            ),
            415,
        ),
        "multipart": (
            lambda: login_body(
                b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}
            ),
            415,
        ),
        "no Content-Type": (lambda: login_body(b'{"username":"a","password":"b"}', {}), 415),
        "application/jsonx": (
            lambda: login_body(
                b'{"username":"a","password":"b"}', {"Content-Type": "application/jsonx"}
            ),
            415,
        ),
        "a JSON array": (lambda: login_body(b'[{"username":"a","password":"b"}]'), 400),
        "a JSON string": (lambda: login_body(b'"username"'), 400),
        "JSON null": (lambda: login_body(b"null"), 400),
        "an empty body": (lambda: login_body(b""), 400),
        "duplicate keys": (
            lambda: login_body(b'{"username":"a","username":"b","password":"c"}'),
            400,
        ),
        "NaN": (lambda: login_body(b'{"username":"a","password":"b","x":NaN}'), 400),
        "Infinity": (lambda: login_body(b'{"username":"a","password":"b","x":-Infinity}'), 400),
        "a lone surrogate": (lambda: login_body(b'{"username":"\\ud800","password":"b"}'), 400),
        "username 300 characters": (
            lambda: login_body(json.dumps({"username": "u" * 300, "password": "b"}).encode()),
            400,
        ),
        "password 1025 characters": (
            lambda: login_body(json.dumps({"username": "a", "password": "p" * 1025}).encode()),
            400,
        ),
        "username a number": (lambda: login_body(b'{"username":5,"password":"b"}'), 400),
        "password null": (lambda: login_body(b'{"username":"a","password":null}'), 400),
        "password an object": (lambda: login_body(b'{"username":"a","password":{"$ne":""}}'), 400),
        "username with a NUL": (
            lambda: login_body(b'{"username":"a\\u0000b","password":"b-password"}'),
            401,
        ),
        "X-Device-Id of 129 characters": (
            lambda: login_body(
                b'{"username":"a","password":"b"}', {**JSON, "X-Device-Id": "d" * 129}
            ),
            400,
        ),
        "Authorization of 9 KB": (lambda: edge.send("GET", "/me", bearer="a" * 9000), 403),
        "Authorization of 60 KB": (
            lambda: edge.send("GET", "/me", bearer=arsenal.login.access + "A" * 60_000),
            403,
        ),
        "Authorization with two tokens": (
            signed_in(
                "GET",
                "/me",
                bearer=None,
                headers={
                    "Authorization": f"Bearer {arsenal.login.access}, Bearer {arsenal.login.access}"
                },
            ),
            403,
        ),
        "two Authorization headers": (
            signed_in(
                "GET",
                "/me",
                bearer=None,
                headers=[
                    ("Authorization", f"Bearer {arsenal.login.access}"),
                    ("Authorization", f"Bearer {arsenal.login.access}"),
                ],
            ),
            403,
        ),
        "Authorization with two spaces": (
            signed_in(
                "GET",
                "/me",
                bearer=None,
                headers={"Authorization": f"Bearer  {arsenal.login.access}"},
            ),
            403,
        ),
        "Authorization Basic": (
            lambda: edge.send("GET", "/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
            403,
        ),
        "Authorization empty Bearer": (
            lambda: edge.send("GET", "/me", headers={"Authorization": "Bearer"}),
            403,
        ),
        "the token in the query string": (
            signed_in("GET", f"/me?access_token={arsenal.login.access}", bearer=None),
            401,
        ),
        "500 cookies on refresh": (
            lambda: edge.send(
                "POST",
                "/auth/refresh",
                headers={"Cookie": "; ".join(f"c{n}=v{n}" for n in range(500))},
            ),
            400,
        ),
        "a 20 KB refresh cookie": (lambda: edge.refresh("r" * 20_000), None),
        "admin path with .. segments": (
            signed_in("POST", f"/me/../admin/users/{arsenal.login.user_id}/revoke"),
            None,
        ),
        "admin path with an encoded slash": (
            signed_in("POST", "/admin%2Fusers/x/revoke"),
            None,
        ),
        "admin path in upper case": (
            signed_in("POST", f"/ADMIN/users/{arsenal.login.user_id}/revoke"),
            None,
        ),
        "admin path with a double slash": (
            signed_in("POST", f"//admin/users/{arsenal.login.user_id}/revoke"),
            None,
        ),
        "admin route with a dot-dot user id": (
            signed_in("POST", "/admin/users/%2e%2e/revoke"),
            403,
        ),
        "admin route as a non-admin": (
            signed_in("POST", f"/admin/users/{arsenal.login.user_id}/revoke"),
            403,
        ),
        "PATCH on login": (lambda: edge.send("PATCH", "/auth/login", body=b"{}"), None),
        "PUT on login": (
            lambda: edge.send("PUT", "/auth/login", json_body={"username": "a", "password": "b"}),
            None,
        ),
    }
    for name, (send, status) in cases.items():
        refused("malformed_input", f"sec: {name}", send(), status=status)
    raw_cases = {
        "a header line over 64 KB": b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"a" * 70_000
        + b"\r\n\r\n",
        "101 headers": b"GET /me HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % n for n in range(101))
        + b"\r\n",
        "a request line over 64 KB": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "a malformed request line": b"GET /me HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "a non-numeric Content-Length": LOGIN_LINE + b"Content-Length: ten\r\n\r\n",
        "a negative Content-Length": LOGIN_LINE + b"Content-Length: -5\r\n\r\n",
        "a bad chunk size": LOGIN_LINE
        + b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
        "a header name with a space": b"GET /me HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        "a control character in X-Device-Id": LOGIN_LINE
        + b"Content-Type: application/json\r\nX-Device-Id: a\x01b\r\nContent-Length: 31\r\n\r\n"
        + b'{"username":"a","password":"b"}',
        "HTTP/0.9": b"GET /me\r\n",
        "a token as the whole request line": b"%s\r\n\r\n" % arsenal.login.access.encode(),
    }
    for name, data in raw_cases.items():
        status, elapsed = edge.raw(data)
        ok = status is not None and 400 <= status < 500 and elapsed < REQUEST_TIMEOUT
        # HTTP/0.9 has no status line: the server answers nothing and closes, also a refusal.
        if name == "HTTP/0.9":
            ok = (status is None or 400 <= status < 500) and elapsed < REQUEST_TIMEOUT
        record("malformed_input", f"sec raw: {name}", ok)
        assert ok, f"{name}: status {status}, {elapsed:.2f} s"
    # Nothing above left the stack unable to serve.
    accepted("the stack still serves", edge.me(arsenal.login.access, arsenal.login.fingerprint))


# --- no oracle across every protected route -------------------------------------------------------

PROTECTED_ROUTES = [
    ("GET", "/me"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions/{sid}"),
    ("POST", "/auth/sessions/revoke-all"),
    ("POST", "/admin/users/{sub}/revoke"),
]


def test_every_rejected_token_gets_the_same_answer_on_every_protected_route(
    arsenal: Arsenal, trap: Trap
) -> None:
    """Each protected route is compared with itself: the same answer for every bad token,
    whatever was wrong with it (signature, header, claims, type, binding)."""
    cases = (
        signature_attacks(arsenal)
        + header_attacks(arsenal, trap.url)
        + claim_attacks(arsenal)
        + type_confusion_bearer_attacks(arsenal)
    )
    login = arsenal.login
    for method, template in PROTECTED_ROUTES:
        path = template.format(sid=login.session_id, sub=login.user_id)
        answers = {}
        for case in cases[:: max(1, len(cases) // 40)]:  # a spread of every category per route
            answer = arsenal.bearer(case, method, path)
            assert answer.elapsed < REQUEST_TIMEOUT
            assert 400 <= answer.status < 500, f"{method} {path} {case.name}: {answer.describe()}"
            answers[case.name] = answer
        assert_no_oracle(f"{arsenal.edge.name} {method} {template}", answers)
        assert next(iter(answers.values())).body == GATEWAY_FORBIDDEN
    # Logout answers every bad token with the same 204 (and revokes nothing). The victim's real
    # refresh token is left out: it is not an attack there, it is a logout.
    logout = {
        case.name: arsenal.edge.send("POST", "/auth/logout", cookies={REFRESH_COOKIE: case.token})
        for case in cases[::5]
        if case.token != login.refresh
    }
    assert all(answer.status == 204 for answer in logout.values())
    assert_no_oracle(f"{arsenal.edge.name} POST /auth/logout", logout)
    accepted(
        "the victim's session survived every attack",
        arsenal.bearer(Case("control", arsenal.access())),
    )
    accepted("its refresh token too", arsenal.edge.refresh(login.refresh, login.fingerprint))
