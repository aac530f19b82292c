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

from tokencore import wire
from tokencore.config import Settings
from tokencore.grant import TokenGrant

REFRESH_COOKIE = wire.REFRESH_COOKIE
REFRESH_COOKIE_PATH = "/auth"
FINGERPRINT_COOKIE = wire.FINGERPRINT_COOKIE
FINGERPRINT_COOKIE_PATH = "/"


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


def parse_cookies(cookies: object, header: object = None) -> dict[str, str]:
    """A request's cookies by name: the event's ``cookies`` list, else its ``Cookie`` header,
    read by ``tokencore.wire`` (the authorizer's rules: a repeated ``__Host-`` cookie is absent,
    any other repeated name is its first occurrence). Nothing here raises."""
    return wire.cookie_jar(wire.cookie_pairs(wire.cookie_pieces(cookies, header)))
