"""Cross-site request checks for the routes a cookie authenticates (refresh, logout).

SameSite=Strict keeps the cookies off cross-*site* requests only: a page on a sibling subdomain
is same-site, so its plain form post to ``/auth/logout`` arrives with the cookies. These routes
therefore accept a request only if

1. it comes from a trusted origin: its ``Origin`` (when present) is one of ``ALLOWED_ORIGINS``
   or the API's own origin; without ``Origin``, ``Sec-Fetch-Site`` (when present) is
   ``same-origin`` or ``none``; without both, ``Referer`` (when present) has a trusted origin.
   A client that sends none of the three (curl, a server) is not a browser and passes;
2. and it carries something a form or a simple ``fetch`` cannot send without a CORS preflight
   (which only ``ALLOWED_ORIGINS`` are granted): ``Content-Type: application/json``,
   ``X-Requested-With`` or ``Authorization``.

The API's own origin is ``https://<Host>`` (API Gateway serves HTTPS only; ``X-Forwarded-Proto``,
which API Gateway and the local stack set, names the scheme when present) or the origin of
``TOKEN_ISSUER``. A refused request changes nothing: the routes check before they read a token.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from tokencore.config import Settings
from tokencore.http.errors import CrossSiteRequest
from tokencore.http.request import Request

REQUESTED_WITH_HEADER: Final = "x-requested-with"
# Sec-Fetch-Site values of a request this origin (or the user, from the address bar) made.
_TRUSTED_FETCH_SITES: Final = frozenset({"same-origin", "none"})
_DEFAULT_PORTS: Final = {"https": "443", "http": "80"}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-cased, default port dropped; None if it has
    no http(s) scheme or no host (``null``, ``about:blank``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def trusted_origins(request: Request, settings: Settings) -> frozenset[str]:
    """ALLOWED_ORIGINS, the issuer's origin and the origin this request was addressed to."""
    trusted = {origin for origin in map(origin_of, settings.allowed_origins) if origin}
    issuer = origin_of(settings.token_issuer)
    if issuer is not None:
        trusted.add(issuer)
    host = request.header("host")
    if host:
        scheme = (request.header("x-forwarded-proto") or "https").split(",")[0].strip().lower()
        own = origin_of(f"{scheme}://{host}")
        if own is not None:
            trusted.add(own)
    return frozenset(trusted)


def _from_trusted_origin(request: Request, settings: Settings) -> bool:
    origin = request.header("origin")
    if origin is not None:
        # "null" (a sandboxed frame, a no-referrer form post) is never trusted.
        return origin_of(origin) in trusted_origins(request, settings)
    fetch_site = request.header("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in _TRUSTED_FETCH_SITES
    referer = request.header("referer")
    if referer is not None:
        return origin_of(referer) in trusted_origins(request, settings)
    return True


def _needs_preflight(request: Request) -> bool:
    content_type = request.header("content-type")
    if content_type is not None and content_type.split(";")[0].strip().lower() == (
        "application/json"
    ):
        return True
    return bool(request.header(REQUESTED_WITH_HEADER) or request.header("authorization"))


def refuse_cross_site(request: Request, settings: Settings) -> None:
    """Raise CrossSiteRequest unless ``request`` may act on the cookies it carries."""
    if not _from_trusted_origin(request, settings):
        raise CrossSiteRequest("request from an untrusted origin")
    if not _needs_preflight(request):
        raise CrossSiteRequest("request needs a JSON body or an X-Requested-With header")


__all__ = [
    "REQUESTED_WITH_HEADER",
    "CrossSiteRequest",
    "origin_of",
    "refuse_cross_site",
    "trusted_origins",
]
