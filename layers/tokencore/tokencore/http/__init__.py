"""The HTTP edge shared by the issuer, refresher, revoker and me functions.

This is the only tokencore package that knows HTTP status codes, headers, cookies and the
Powertools event-handler types. Everything below it (``service``, ``sessions``, ``tokens``...)
raises the error tree of ``tokencore.errors`` and never thinks about a response; everything
above it (``functions/<name>/app.py``) is a thin list of routes that parse with ``Request``,
call the core, and answer with the helpers here.

What the edge guarantees on every response, whatever the route did or raised:

* errors are JSON ``{"error", "error_description"}`` with RFC 6749 §5.2 / RFC 6750 codes, one
  mapping for the whole error tree (``errors.error_response``); every token failure of a kind
  answers byte-for-byte the same, and nothing ever answers 500;
* ``Cache-Control: no-store`` and ``Pragma: no-cache`` unless a route chose a cache policy
  (the public key documents), plus HSTS, ``nosniff`` and a deny-everything CSP;
* CORS only for the exact origins in ``ALLOWED_ORIGINS`` (Powertools ``CORSConfig``), never a
  reflected arbitrary origin, and none at all when the list is empty.

Importing this package does not read settings (the resolver is built on the first request)
and does not import boto3.
"""

from tokencore.authcontext import AuthorizerContext, Unauthenticated
from tokencore.http.cookies import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    REFRESH_COOKIE_PATH,
    clearing_cookies,
    grant_cookies,
    parse_cookies,
)
from tokencore.http.crosssite import refuse_cross_site
from tokencore.http.edge import HttpEdge, cors_config, endpoint, new_router, security_headers
from tokencore.http.errors import (
    BadRequest,
    CrossSiteRequest,
    NotFound,
    PayloadTooLarge,
    RouteKind,
    UnsupportedMediaType,
    error_response,
)
from tokencore.http.request import JsonBody, Request
from tokencore.http.responses import (
    HttpResponse,
    grant_response,
    json_response,
    no_content,
    to_iso8601,
)
from tokencore.http.telemetry import count, route_library_logs, traced, tracer_requested

__all__ = [
    "FINGERPRINT_COOKIE",
    "REFRESH_COOKIE",
    "REFRESH_COOKIE_PATH",
    "AuthorizerContext",
    "BadRequest",
    "CrossSiteRequest",
    "HttpEdge",
    "HttpResponse",
    "JsonBody",
    "NotFound",
    "PayloadTooLarge",
    "Request",
    "RouteKind",
    "Unauthenticated",
    "UnsupportedMediaType",
    "clearing_cookies",
    "cors_config",
    "count",
    "endpoint",
    "error_response",
    "grant_cookies",
    "grant_response",
    "json_response",
    "new_router",
    "no_content",
    "parse_cookies",
    "refuse_cross_site",
    "route_library_logs",
    "security_headers",
    "to_iso8601",
    "traced",
    "tracer_requested",
]
