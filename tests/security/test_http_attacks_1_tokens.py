"""The attack suite at the HTTP edge, sections 1 to 4 (signature and algorithm, header
injection, claims, token-type confusion and retired keys) and no oracle across every protected
route. What every attack asserts, and how forgeries are signed: http_attacks_kit.py."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from tests.security.http_attacks_kit import (
    AHEAD,
    GATEWAY_FORBIDDEN,
    INSIDE,
    INVALID_GRANT,
    LEEWAY,
    MARGIN,
    P256_ORDER,
    Arsenal,
    Case,
    accepted,
    assert_no_oracle,
    refused,
)
from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    JWKS_PARAMETER,
    REFRESH_COOKIE,
    REQUEST_TIMEOUT,
    Edge,
    Login,
    b64url,
    b64url_decode,
    forge,
)
from tests.security.token_kit import DROP, apply_changes
from tokencore.keys import generate_key
from tokencore.keys.jwk import PrivateKeyEntry, public_jwk

pytestmark = pytest.mark.e2e


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
        .public_key(entry.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(entry.key, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def header_attacks(arsenal: Arsenal, trap_url: str) -> list[Case]:
    claims = arsenal.access_claims()
    our_kid = arsenal.access_key.kid
    attacker = generate_key(arsenal.alg)
    attacker_jwk = public_jwk(attacker.verification_key())

    def signed(header: dict[str, Any] | bytes, key: PrivateKeyEntry | None = None) -> str:
        return forge(header, claims, key=key or arsenal.access_key)

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

    def signed(claims: dict[str, Any] | bytes) -> str:
        return arsenal.access(claims=claims)

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
            forge(
                hs(), apply_changes(dict(refresh_claims), {"gen": DROP}), key=arsenal.refresh_key
            ),
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
