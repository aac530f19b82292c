"""Revoker: logout (public) and session management (behind the Lambda authorizer).

* ``POST /auth/logout``: revoke the session named by the refresh token (cookie or body, per
  REFRESH_TOKEN_TRANSPORT) or by ``Authorization: Bearer``; 204 and both cookies cleared, even
  for an invalid or expired token (idempotent, no oracle). A store fault is 503 and keeps the
  cookies, so the client can retry a logout that did not happen.
* ``GET /auth/sessions``: the caller's active sessions; times are ISO-8601 UTC strings.
* ``DELETE /auth/sessions/{session_id}``: one of the caller's own sessions (anyone else's is
  404, exactly like an unknown id); 204, idempotent.
* ``POST /auth/sessions/revoke-all``: every session of the caller, the current one included.
* ``POST /admin/users/{user_id}/revoke``: every session of a user; role ``admin`` only,
  checked here again although the authorizer already did (defence in depth).

The caller is whoever the authorizer put in ``requestContext.authorizer.lambda``; without a
valid context a protected route answers 401, never 500.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokencore.audit import security_event
from tokencore.authcontext import AuthorizerContext
from tokencore.errors import Forbidden, SessionNotFound, UserNotFound
from tokencore.http import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    HttpEdge,
    HttpResponse,
    NotFound,
    Request,
    RouteKind,
    clearing_cookies,
    count,
    endpoint,
    json_response,
    new_router,
    no_content,
    refuse_cross_site,
    route_library_logs,
    to_iso8601,
    traced,
)
from tokencore.policy import ADMIN_ROLE
from tokencore.runtime import Runtime, current_settings, get_runtime
from tokencore.sessions import REASON_ADMIN, REASON_LOGOUT, REASON_REVOKE_ALL
from tokencore.sessionservice import REASON_USER_REVOKED
from tokencore.wire import is_valid_user_id

logger = Logger()
metrics = Metrics()
router = new_router()
edge = HttpEdge(router, current_settings, logger)
route_library_logs(logger)

REFRESH_TOKEN_MAX_CHARS = 8192


def _caller(runtime: Runtime) -> AuthorizerContext:
    """Who the authorizer allowed, with the leeway it allowed them under."""
    return Request(router.current_event.raw_event).caller(
        runtime.clock.now(), leeway_seconds=runtime.settings.clock_skew_leeway_seconds
    )


@router.post("/auth/logout")
@endpoint(RouteKind.PUBLIC, clear_cookies_on_rejection=True)
def logout() -> HttpResponse:
    runtime = get_runtime()
    settings = runtime.settings
    request = Request(router.current_event.raw_event)
    refuse_cross_site(request, settings)  # before any token is read: a refusal changes nothing
    refresh_token: str | None = None
    if settings.refresh_body_in_use and request.has_body():
        body = request.json_body()
        refresh_token = body.optional_string("refresh_token", max_chars=REFRESH_TOKEN_MAX_CHARS)
    if refresh_token is None and settings.refresh_cookie_in_use:
        refresh_token = request.cookie(REFRESH_COOKIE)
    revoked = runtime.auth.logout(
        refresh_token=refresh_token,
        access_token=request.bearer_token(),
        fingerprint=request.cookie(FINGERPRINT_COOKIE),
    )
    if revoked:
        count(metrics, "Revocation", reason=REASON_LOGOUT)
    return no_content(cookies=clearing_cookies())


@router.get("/auth/sessions")
@endpoint(RouteKind.BEARER)
def list_sessions() -> HttpResponse:
    runtime = get_runtime()
    caller = _caller(runtime)
    sessions = [
        {
            "session_id": session.session_id,
            "created_at": to_iso8601(session.created_at),
            "last_activity": to_iso8601(session.last_activity),
            "device_id": session.device_id,
            "current": session.session_id == caller.session_id,
        }
        for session in runtime.session_service.list_sessions(caller.user_id)
    ]
    return json_response(200, {"sessions": sessions})


@router.delete("/auth/sessions/<session_id>")
@endpoint(RouteKind.BEARER)
def delete_session(session_id: str) -> HttpResponse:
    runtime = get_runtime()
    caller = _caller(runtime)
    try:
        revoked = runtime.session_service.revoke_session(
            session_id, REASON_USER_REVOKED, owner=caller.user_id
        )
    except SessionNotFound as exc:
        raise NotFound("no such session for this user") from exc
    if revoked:
        count(metrics, "Revocation", reason=REASON_USER_REVOKED)
    # Ending the current session is a logout: clear this browser's cookies too.
    current = session_id == caller.session_id
    return no_content(cookies=clearing_cookies() if current else ())


@router.post("/auth/sessions/revoke-all")
@endpoint(RouteKind.BEARER)
def revoke_all() -> HttpResponse:
    runtime = get_runtime()
    caller = _caller(runtime)
    revoked = runtime.session_service.revoke_all(
        caller.user_id, REASON_REVOKE_ALL, current_session_id=caller.session_id
    )
    if revoked:
        count(metrics, "Revocation", value=revoked, reason=REASON_REVOKE_ALL)
    return no_content(cookies=clearing_cookies())


@router.post("/admin/users/<user_id>/revoke")
@endpoint(RouteKind.BEARER)
def admin_revoke(user_id: str) -> HttpResponse:
    runtime = get_runtime()
    caller = _caller(runtime)
    if not caller.has_role(ADMIN_ROLE):
        security_event("admin_denied", user_id=caller.user_id, session_id=caller.session_id)
        raise Forbidden("admin role required")
    if not is_valid_user_id(user_id):
        raise NotFound("no such user")
    try:
        revoked = runtime.session_service.admin_revoke(user_id, admin_id=caller.user_id)
    except UserNotFound as exc:
        raise NotFound("no such user") from exc
    if revoked:
        count(metrics, "Revocation", value=revoked, reason=REASON_ADMIN)
    return no_content()


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@traced  # the Powertools Tracer only when turned on (tokencore.http.traced)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return edge.handle(event, context)
