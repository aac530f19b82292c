"""The attack suite at the HTTP edge, sections 8 and 9: cookies, CORS and headers; oversize
and malformed input. What every attack asserts: http_attacks_kit.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.security.conftest import ALLOWED_ORIGIN
from tests.security.http_attacks_kit import (
    EDGES,
    SECURITY_HEADERS,
    Arsenal,
    accepted,
    login_answer,
    refused,
)
from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    REQUEST_TIMEOUT,
    Answer,
    Edge,
    claims_of,
    fresh_source_ip,
)
from tests.security.tally import record

pytestmark = pytest.mark.e2e


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
        "login 401": login_answer(edge, "unknown-user-x", "some-password-x", fresh_source_ip()),
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
