"""The resolver each function runs, and what every response gets on its way out.

A function module declares its routes on a Powertools ``Router`` at import time and hands it to
an ``HttpEdge`` with a provider of the current Settings (the function's Runtime: the edge never
imports the composition root). The edge builds the ``APIGatewayHttpResolver`` on the first
request (never at import: CORS comes from ALLOWED_ORIGINS), and rebuilds it if the Settings
object changes (tests, ``make dev`` reloading the environment).

``HttpEdge.handle`` is the whole Lambda entry point below the Powertools decorators: it
resolves the event, turns anything that still escapes into a 503, and adds the security and
cache headers to whatever comes out. Routes wrap their body in ``endpoint(kind)`` so each maps
its own errors with the right kind (grant, bearer or public).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokencore.config import Settings
from tokencore.errors import RateLimited, Rejected
from tokencore.http.cookies import clearing_cookies
from tokencore.http.errors import CrossSiteRequest, RouteKind, error_response
from tokencore.http.responses import HttpResponse, dump_json

P = ParamSpec("P")

# Request headers a browser client may send cross-origin, beyond Powertools' defaults
# (Authorization, Content-Type and the X-Amz-* ones).
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "X-Device-Id", "X-Requested-With"]
# Response headers a browser client must be able to read: when to retry, and why a 401.
CORS_EXPOSE_HEADERS = ["Retry-After", "WWW-Authenticate"]
CORS_MAX_AGE_SECONDS = 600

SECURITY_HEADERS = {
    # Two years, every subdomain: the issuer's origin is HTTPS only.
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    # A JSON API renders nothing and is framed by nobody.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for exactly the configured origins, with credentials (the refresh cookie); None
    (no CORS headers at all) when ALLOWED_ORIGINS is empty. An unlisted Origin gets no
    Access-Control-Allow-Origin: CORSConfig only ever echoes an origin it was given."""
    if not settings.allowed_origins:
        return None
    first, *rest = settings.allowed_origins
    return CORSConfig(
        allow_origin=first,
        extra_origins=rest,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=CORS_MAX_AGE_SECONDS,
        allow_credentials=True,
    )


def security_headers(headers: dict[str, str], *, vary_origin: bool) -> dict[str, str]:
    """Add the headers every response carries to ``headers`` (in place) and return it.

    A route that chose a cache policy (``Cache-Control``) keeps it; every other response is
    ``no-store`` with ``Pragma: no-cache`` (HTTP/1.0 caches). With CORS on, ``Vary: Origin``
    tells caches that Access-Control-Allow-Origin depends on the request's Origin.
    """
    present = {name.lower() for name in headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers[name] = value
    if "cache-control" not in present:
        headers.update(NO_STORE_HEADERS)
    if vary_origin:
        vary = next((name for name in headers if name.lower() == "vary"), None)
        if vary is None:
            headers["Vary"] = "Origin"
        elif "origin" not in headers[vary].lower():
            headers[vary] = f"{headers[vary]}, Origin"
    return headers


def endpoint(
    kind: RouteKind, *, clear_cookies_on_rejection: bool = False
) -> Callable[[Callable[P, HttpResponse]], Callable[P, HttpResponse]]:
    """Map whatever the route raises to its response, for a route of this ``kind``.

    With ``clear_cookies_on_rejection``, a rejection (4xx other than 429) also clears both
    cookies: a refresh token that failed is dead, and keeping it only makes the client fail
    again. A rate limit or a fault keeps them: the token is still good for a retry, and so does
    a cross-site refusal.
    """

    def decorate(route: Callable[P, HttpResponse]) -> Callable[P, HttpResponse]:
        @functools.wraps(route)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            try:
                return route(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  (every failure becomes a response)
                # A cross-site refusal keeps the cookies: clearing them would be the very
                # logout the check refuses.
                clear = (
                    clear_cookies_on_rejection
                    and isinstance(exc, Rejected)
                    and not isinstance(exc, RateLimited | CrossSiteRequest)
                )
                return error_response(exc, kind, cookies=clearing_cookies() if clear else ())

        return wrapper

    return decorate


def _unhandled(exc: Exception) -> HttpResponse:
    """Anything that escapes a route (or an unknown route: Powertools' NotFoundError)."""
    return error_response(exc, RouteKind.PUBLIC)


def _flatten(headers: Mapping[str, str | list[str]]) -> dict[str, str]:
    return {
        name: value if isinstance(value, str) else ", ".join(value)
        for name, value in headers.items()
    }


def new_router() -> APIGatewayHttpRouter:
    """A Powertools router for a function's routes (typed: its constructor is not)."""
    return APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


class HttpEdge:
    """One per function module: its routes, and the resolver built for the current Settings
    (``settings`` is called once per request; building them may fail, which answers 503)."""

    def __init__(
        self,
        router: APIGatewayHttpRouter,
        settings: Callable[[], Settings],
        logger: Logger | None = None,
    ) -> None:
        self._router = router
        self._settings = settings
        self._logger = logger
        self._lock = threading.Lock()
        self._built: tuple[Settings, APIGatewayHttpResolver] | None = None

    def resolver(self, settings: Settings) -> APIGatewayHttpResolver:
        built = self._built
        if built is not None and built[0] is settings:
            return built[1]
        with self._lock:
            built = self._built
            if built is not None and built[0] is settings:
                return built[1]
            # debug=False explicitly: POWERTOOLS_DEV would otherwise print every event
            # (bearer tokens, cookies, passwords) to the log.
            app = APIGatewayHttpResolver(
                cors=cors_config(settings), debug=False, serializer=dump_json
            )
            app.include_router(self._router)
            app.exception_handler(Exception)(_unhandled)
            self._built = (settings, app)
            return app

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Resolve ``event``; never raise, never answer 500."""
        vary_origin = False
        try:
            settings = self._settings()
            vary_origin = bool(settings.allowed_origins)
            result = self.resolver(settings).resolve(event, context)
        except Exception as exc:  # noqa: BLE001  (never let Lambda answer 500)
            # A malformed event or a configuration error, before any route ran.
            response = error_response(exc, RouteKind.PUBLIC)
            result = {
                "statusCode": response.status_code,
                "headers": _flatten(response.headers),
                "cookies": [],
                "body": response.body,
                "isBase64Encoded": False,
            }
        headers = result.get("headers")
        if not isinstance(headers, dict):
            headers = {}
        result["headers"] = security_headers(headers, vary_origin=vary_origin)
        if self._logger is not None:
            self._logger.info("request", extra=_access_fields(event, result))
        return result


def _access_fields(event: object, result: Mapping[str, Any]) -> dict[str, object]:
    """One access-log line: the route *template* (``DELETE /auth/sessions/{session_id}``, never
    the raw path with its ids), the method and the status. No header, cookie, body or query."""
    route = event.get("routeKey") if isinstance(event, Mapping) else None
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    http = context.get("http") if isinstance(context, Mapping) else None
    method = http.get("method") if isinstance(http, Mapping) else None
    return {
        "route": route if isinstance(route, str) and len(route) <= 256 else None,
        "method": method if isinstance(method, str) and len(method) <= 16 else None,
        "status": result.get("statusCode"),
    }
