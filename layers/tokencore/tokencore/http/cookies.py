"""The two cookies, and reading cookies from an HTTP API (payload 2.0) event.

* ``__Secure-rt`` holds the refresh token: HttpOnly (no script reads it), Secure, SameSite=Strict
  (never sent on a cross-site request, which is the CSRF defence for /auth/refresh and
  /auth/logout), ``Path=/auth`` (the narrowest path covering both routes that read it; the
  ``__Host-`` prefix would force ``Path=/`` and send it to every API route). ``__Secure-``
  makes browsers refuse the cookie unless it was set over HTTPS with ``Secure``.
* ``__Host-fgp`` holds the fingerprint whose SHA-256 is bound into access tokens: it must reach
  every route the authorizer guards, hence ``Path=/``, which the ``__Host-`` prefix allows and
  enforces (Secure, no Domain: a sibling subdomain can never plant or overwrite it).

Both live exactly as long as the refresh token (``Max-Age`` = seconds until its ``exp``), and
both are cleared with ``Max-Age=0`` and the same name, path and flags (a cookie is only replaced
by one with the same name, domain and path).
"""

from __future__ import annotations

import math

from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from tokencore.config import Settings
from tokencore.grant import TokenGrant

REFRESH_COOKIE = "__Secure-rt"
REFRESH_COOKIE_PATH = "/auth"
FINGERPRINT_COOKIE = "__Host-fgp"
FINGERPRINT_COOKIE_PATH = "/"

# Reading: a request carries a handful of cookies; anything beyond these bounds is ignored
# rather than parsed. The per-entry bound matches the verifier's 8 KB bound on a token (plus
# the name), so any token-sized value is judged by the verifier like every other bad token
# (the same 401), not mistaken for a missing cookie. Browsers send at most 4096 bytes anyway.
MAX_COOKIES = 50
MAX_COOKIE_CHARS = 8192 + 64


def _cookie(name: str, value: str, path: str, max_age: int) -> Cookie:
    return Cookie(
        name=name,
        value=value,
        path=path,
        secure=True,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.STRICT_MODE,
    )


def grant_cookies(grant: TokenGrant, settings: Settings, now: float) -> list[Cookie]:
    """The cookies a login or refresh sets."""
    max_age = max(0, grant.refresh_expires_at - math.floor(now))
    cookies = []
    if settings.refresh_cookie_in_use:
        cookies.append(_cookie(REFRESH_COOKIE, grant.refresh_token, REFRESH_COOKIE_PATH, max_age))
    if grant.fingerprint is not None:
        cookies.append(
            _cookie(FINGERPRINT_COOKIE, grant.fingerprint, FINGERPRINT_COOKIE_PATH, max_age)
        )
    return cookies


def clearing_cookies() -> list[Cookie]:
    """Both cookies, emptied and expired. Always both: clearing a cookie that was never set is
    harmless, and a transport or binding change between login and logout leaves nothing behind."""
    return [
        _cookie(REFRESH_COOKIE, "", REFRESH_COOKIE_PATH, 0),
        _cookie(FINGERPRINT_COOKIE, "", FINGERPRINT_COOKIE_PATH, 0),
    ]


def parse_cookies(raw: object) -> dict[str, str]:
    """``event["cookies"]`` (a list of ``name=value`` strings) as a dict.

    The first occurrence of a name wins: browsers send the cookie with the longest matching
    path first, so that is the one set for the narrowest scope. Entries that are not strings,
    have no ``=``, or exceed the bounds are skipped; nothing here raises.
    """
    cookies: dict[str, str] = {}
    if not isinstance(raw, list):
        return cookies
    for entry in raw[:MAX_COOKIES]:
        if not isinstance(entry, str) or len(entry) > MAX_COOKIE_CHARS:
            continue
        # One list entry may still hold several pairs if a proxy joined them.
        for pair in entry.split(";"):
            name, sep, value = pair.strip().partition("=")
            if not sep or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]  # RFC 6265 allows a DQUOTE-wrapped value
            cookies.setdefault(name, value)
    return cookies
