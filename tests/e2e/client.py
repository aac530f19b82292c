"""A tiny HTTP client with a browser-like cookie jar, for driving the local stack.

Why not ``http.cookiejar``: it never returns a ``Secure`` cookie over plain http, while browsers
(and curl 7.79+) treat 127.0.0.1 and localhost as secure contexts and do. Our refresh cookie is
``__Secure-rt; Secure; Path=/auth`` and the fingerprint cookie ``__Host-fgp; Secure; Path=/``,
so this jar stores cookies by (name, path), drops them on ``Max-Age=0`` (or a past Expires), and
sends those whose Path matches the request path (RFC 6265 §5.1.4), longest path first.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

# A failed assertion prints these objects; what it prints shows no token or cookie value.
_COMPACT_JWS = re.compile(rb"eyJ[\w-]+\.[\w-]+\.[\w-]*")
_SECRET_HEADERS = frozenset({"set-cookie", "cookie", "authorization"})


REQUESTED_WITH = {"X-Requested-With": "tokencore"}


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        headers = [
            (key, "<hidden>" if key.lower() in _SECRET_HEADERS else value)
            for key, value in self.headers
        ]
        body = _COMPACT_JWS.sub(b"<token>", self.body)
        return f"Response(status={self.status}, headers={headers!r}, body={body!r})"


def _path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


@dataclass
class Client:
    base_url: str
    cookies: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def copy(self) -> Client:
        """Another client holding the same cookies now (to replay an old refresh token)."""
        return Client(self.base_url, copy.deepcopy(self.cookies))

    def cookie(self, name: str) -> str | None:
        for (cookie_name, _path), value in self.cookies.items():
            if cookie_name == name:
                return value
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        bearer: str | None = None,
        timeout: float = 120.0,  # a hang bound, not a speed budget
    ) -> Response:
        url = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(
            url.hostname or "127.0.0.1", url.port, timeout=timeout
        )
        send = dict(headers or {})
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send.setdefault("Content-Type", "application/json")
        if bearer is not None:
            send["Authorization"] = f"Bearer {bearer}"
        path_only = path.split("?", 1)[0]
        matching = sorted(
            ((name, cookie_path, value) for (name, cookie_path), value in self.cookies.items()),
            key=lambda item: len(item[1]),
            reverse=True,
        )
        pairs = [
            f"{name}={value}"
            for name, cookie_path, value in matching
            if _path_matches(path_only, cookie_path)
        ]
        if pairs:
            send["Cookie"] = "; ".join(pairs)
        try:
            connection.request(method, path, body=body, headers=send)
            raw = connection.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read())
        finally:
            connection.close()
        self._store(response.header_values("Set-Cookie"), path_only)
        return response

    def _store(self, set_cookies: list[str], request_path: str) -> None:
        for line in set_cookies:
            parsed = SimpleCookie()
            parsed.load(line)
            for name, morsel in parsed.items():
                path = morsel["path"] or request_path.rsplit("/", 1)[0] or "/"
                max_age = morsel["max-age"]
                if max_age != "" and int(max_age) <= 0:
                    self.cookies.pop((name, path), None)
                else:
                    self.cookies[(name, path)] = morsel.value

    # --- the API's verbs ------------------------------------------------------------------

    def login(self, username: str, password: str, **extra: Any) -> Response:
        return self.request(
            "POST", "/auth/login", json_body={"username": username, "password": password}, **extra
        )

    # X-Requested-With, as the web client sends it: a cookie-authenticated POST needs it (or a
    # JSON body), since a cross-site form cannot send it.
    def refresh(self) -> Response:
        return self.request("POST", "/auth/refresh", headers=dict(REQUESTED_WITH))

    def logout(self) -> Response:
        return self.request("POST", "/auth/logout", headers=dict(REQUESTED_WITH))
