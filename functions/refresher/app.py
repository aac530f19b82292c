"""Refresher: POST /auth/refresh, the one route that rotates refresh tokens.

The refresh token comes from the ``__Secure-rt`` cookie (REFRESH_TOKEN_TRANSPORT cookie/both) or
the JSON body's ``refresh_token`` (body/both; with both, an explicit body token wins over the
cookie the browser attaches on its own). The fingerprint cookie goes to AuthService.refresh so
the new access token stays bound to the same browser.

Every rejected token (forged, expired, revoked, reused, of a disabled user) answers the same
401 invalid_grant and clears both cookies. A reuse also revokes the session (the session store
does that) and is reported: the core logs the security event once, and this function counts
``RefreshReuse{classification}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokencore.audit import security_event
from tokencore.errors import RateLimited
from tokencore.http import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    BadRequest,
    HttpEdge,
    HttpResponse,
    Request,
    RouteKind,
    count,
    endpoint,
    grant_response,
    new_router,
    refuse_cross_site,
    route_library_logs,
    traced,
)
from tokencore.runtime import current_settings, get_runtime
from tokencore.sessions import RefreshReuseRevoked

logger = Logger()
metrics = Metrics()
router = new_router()
edge = HttpEdge(router, current_settings, logger)
route_library_logs(logger)

REFRESH_TOKEN_MAX_CHARS = 8192  # the verifier's own bound on any token


@router.post("/auth/refresh")
@endpoint(RouteKind.GRANT, clear_cookies_on_rejection=True)
def refresh() -> HttpResponse:
    runtime = get_runtime()
    settings = runtime.settings
    request = Request(router.current_event.raw_event)
    refuse_cross_site(request, settings)  # before any token is read: a refusal changes nothing
    token: str | None = None
    if settings.refresh_body_in_use and request.has_body():
        body = request.json_body()
        token = body.optional_string("refresh_token", max_chars=REFRESH_TOKEN_MAX_CHARS)
    if token is None and settings.refresh_cookie_in_use:
        token = request.cookie(REFRESH_COOKIE)
    if token is None:
        raise BadRequest("no refresh token")
    try:
        grant = runtime.auth.refresh(token, fingerprint=request.cookie(FINGERPRINT_COOKIE))
    except RefreshReuseRevoked as reuse:
        classification = reuse.event.classification
        count(metrics, "RefreshReuse", classification=classification)
        count(metrics, "Revocation", reason="refresh_reuse")
        raise
    except RateLimited as limited:
        count(metrics, "RateLimited", scope=limited.scope or "refresh")
        security_event(
            "refresh_rate_limited", scope=limited.scope or "refresh", source_ip=request.source_ip
        )
        raise
    return grant_response(grant, settings, runtime.clock.now())


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@traced  # the Powertools Tracer only when turned on (tokencore.http.traced)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return edge.handle(event, context)
