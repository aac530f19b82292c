"""Issuer: POST /auth/login and the public key documents under /.well-known/.

Thin by design: parse with ``tokencore.http.Request``, call ``AuthService``, answer with the edge
helpers. Nothing here logs the event, a header, a cookie, a body or a token.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokencore.audit import hash_identifier, security_event
from tokencore.errors import InvalidCredentials, RateLimited, UserDisabled
from tokencore.http import (
    HttpEdge,
    HttpResponse,
    Request,
    RouteKind,
    count,
    endpoint,
    grant_response,
    json_response,
    new_router,
    route_library_logs,
    traced,
)
from tokencore.keys import jwks_document
from tokencore.runtime import current_settings, get_runtime
from tokencore.service import LoginRequest
from tokencore.users import username_rate_key

logger = Logger()
metrics = Metrics()
router = new_router()
edge = HttpEdge(router, current_settings, logger)
route_library_logs(logger)

USERNAME_MAX_CHARS = 256  # the user store refuses names over 64 after normalizing
PASSWORD_MAX_CHARS = 1024  # the same bound as users.passwords: bounds the Argon2 work
# Verifiers may cache the key set for at most this long, and never longer than our own
# verifiers trust theirs (JWKS_CACHE_TTL_SECONDS): the bound on emergency key revocation, and
# the time a next key is published before it signs (docs/keys.md), so a verifier that honours
# max-age never meets a new kid and never keeps a revoked key longer than ours do.
JWKS_MAX_AGE_SECONDS = 300
DISCOVERY_MAX_AGE_SECONDS = 3600


@router.post("/auth/login")
@endpoint(RouteKind.GRANT)
def login() -> HttpResponse:
    runtime = get_runtime()
    request = Request(router.current_event.raw_event)
    body = request.json_body()
    username = body.string("username", max_chars=USERNAME_MAX_CHARS)
    password = body.string("password", max_chars=PASSWORD_MAX_CHARS)
    login_request = LoginRequest(
        username=username,
        password=password,
        source_ip=request.source_ip,
        device_id=request.device_id(),
        user_agent=request.user_agent,
    )
    user = _username_label(username)
    try:
        grant = runtime.auth.login(login_request)
    except InvalidCredentials as failed:
        # The client sees one answer; the log tells a disabled account from a bad password.
        reason = UserDisabled.code if isinstance(failed.__cause__, UserDisabled) else failed.code
        count(metrics, "LoginFailed")
        security_event("login_failed", reason=reason, user=user, source_ip=request.source_ip)
        raise
    except RateLimited as limited:
        scope = limited.scope or "login"
        count(metrics, "RateLimited", scope=scope)
        security_event("login_rate_limited", scope=scope, user=user, source_ip=request.source_ip)
        raise
    count(metrics, "LoginSucceeded")
    security_event(
        "login_succeeded",
        level=logging.INFO,
        user=user,
        session_id=grant.session_id,
        source_ip=request.source_ip,
    )
    return grant_response(grant, runtime.settings, runtime.clock.now())


@router.get("/.well-known/jwks.json")
@endpoint(RouteKind.PUBLIC)
def jwks() -> HttpResponse:
    """Public access-token keys only (``jwks_document`` drops anything symmetric): next, active
    and retired, as published, at most a few seconds old (``Runtime.jwks_endpoint_keys``)."""
    runtime = get_runtime()
    document = jwks_document(runtime.jwks_endpoint_keys.keys())
    max_age = min(JWKS_MAX_AGE_SECONDS, runtime.settings.jwks_cache_ttl_seconds)
    return json_response(200, document, headers={"Cache-Control": f"public, max-age={max_age}"})


@router.get("/.well-known/openid-configuration")
@endpoint(RouteKind.PUBLIC)
def openid_configuration() -> HttpResponse:
    """Discovery for verifiers (API Gateway's JWT authorizer, JOSE libraries): ``issuer`` is
    exactly the ``iss`` of every token. tokencore is not an OpenID provider: no authorization or
    token endpoint is advertised (/auth/login is not an OAuth token endpoint); the three
    arrays OpenID Discovery requires describe the access tokens (their ``alg``)."""
    settings = get_runtime().settings
    issuer = settings.token_issuer
    document = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [settings.access_token_alg],
    }
    return json_response(
        200, document, headers={"Cache-Control": f"public, max-age={DISCOVERY_MAX_AGE_SECONDS}"}
    )


def _username_label(username: str) -> str:
    """The normalized name (so "Alice" and "ALICE" join), hashed: usernames are personal data
    and are never logged as typed (a password typed into the username field happens)."""
    return hash_identifier(username_rate_key(username))


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@traced  # the Powertools Tracer only when turned on (tokencore.http.traced)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return edge.handle(event, context)
