"""One mapping from the tokencore error tree to HTTP responses.

The status and code depend on what kind of route answers (``RouteKind``: GRANT for login and
refresh, BEARER behind the authorizer, PUBLIC like BEARER); docs/architecture.md ("Errors") has
the table. Every rejected credential is a 401 (``invalid_grant`` on grant routes, not RFC 6749's
400, so a client has one rule: 401 means authenticate again, and a reused refresh token says
"logged out" in the same words as any other dead one).

No oracle: every failure of one kind has the same status, body and headers, whatever the
internal code (expired, forged, reused, revoked, unknown user all read "invalid, expired or
revoked"). The internal code goes to the log, never to the client. Nothing answers 500: an
unexpected exception is our fault, so it is a retryable 503 with no detail.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.shared.cookies import Cookie

from tokencore.authcontext import Unauthenticated
from tokencore.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidRequest,
    RateLimited,
    Rejected,
    ServiceFault,
    SessionRejected,
    TokenCoreError,
    TokenRejected,
    UserDisabled,
    UserNotFound,
)
from tokencore.http.responses import HttpResponse, json_response

logger = logging.getLogger(__name__)

REALM = "tokencore"
MAX_RETRY_AFTER_SECONDS = 3600


class RouteKind(StrEnum):
    GRANT = "grant"  # credentials or a refresh token in, tokens out (RFC 6749 §5.2 errors)
    BEARER = "bearer"  # behind the Lambda authorizer (RFC 6750 §3.1 errors)
    PUBLIC = "public"  # no credentials needed (key documents, logout)


# --- Edge errors: what only the HTTP layer can tell ------------------------------------------


class BadRequest(InvalidRequest):
    """The request itself is malformed (body, header, path parameter)."""

    code = "invalid_request"


class UnsupportedMediaType(BadRequest):
    code = "unsupported_media_type"


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"


class NotFound(Rejected):
    """Nothing here for this caller: an unknown route, another user's session."""

    code = "not_found"


class CrossSiteRequest(Rejected):
    """A cookie-authenticated request from an untrusted origin, or one a form could send
    (``http.crosssite``). Refused before anything is read, so it changes nothing, cookies
    included."""

    code = "cross_site_request"


# --- The mapping -----------------------------------------------------------------------------

DESCRIPTIONS = {
    "credentials": "invalid username or password",
    "grant": "the refresh token is invalid, expired or revoked",
    "token": "the access token is invalid, expired or revoked",
    "scope": "the access token does not grant access to this resource",
    "not_found": "not found",
    "cross_site": "cross-site requests are not accepted",
    "request": "the request is malformed",
    "media_type": "the request body must be application/json",
    "too_large": "the request body is too large",
    "rate_limited": "too many requests; retry later",
    "unavailable": "the service is temporarily unavailable; retry later",
}


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    error: str
    description: str
    headers: tuple[tuple[str, str], ...] = ()


def _retry_after(seconds: int) -> tuple[tuple[str, str], ...]:
    bounded = min(MAX_RETRY_AFTER_SECONDS, max(1, int(seconds)))
    return (("Retry-After", str(bounded)),)


def _challenge(kind: RouteKind, error: str | None) -> tuple[tuple[str, str], ...]:
    """WWW-Authenticate (RFC 7235 requires it on every 401). Bearer routes name the RFC 6750
    error; the grant routes authenticate no bearer token, so their challenge names only the
    scheme and realm (the body carries invalid_grant), identical for every grant failure."""
    if kind is RouteKind.GRANT or error is None:
        return (("WWW-Authenticate", f'Bearer realm="{REALM}"'),)
    return (("WWW-Authenticate", f'Bearer realm="{REALM}", error="{error}"'),)


def _unauthorized(kind: RouteKind, exc: BaseException) -> Problem:
    if kind is RouteKind.GRANT:
        text = "credentials" if isinstance(exc, InvalidCredentials) else "grant"
        return Problem(401, "invalid_grant", DESCRIPTIONS[text], _challenge(kind, None))
    return Problem(401, "invalid_token", DESCRIPTIONS["token"], _challenge(kind, "invalid_token"))


def problem_for(exc: BaseException, kind: RouteKind) -> Problem:
    """The response an exception deserves on a route of this kind."""
    if isinstance(exc, RateLimited):
        return Problem(
            429,
            "rate_limited",
            DESCRIPTIONS["rate_limited"],
            _retry_after(exc.retry_after_seconds),
        )
    if isinstance(exc, ServiceFault):
        return Problem(
            503,
            "temporarily_unavailable",
            DESCRIPTIONS["unavailable"],
            _retry_after(exc.retry_after_seconds),
        )
    if isinstance(
        exc,
        InvalidCredentials
        | TokenRejected
        | SessionRejected
        | UserDisabled
        | UserNotFound
        | Unauthenticated,
    ):
        return _unauthorized(kind, exc)
    if isinstance(exc, CrossSiteRequest):
        return Problem(403, "invalid_request", DESCRIPTIONS["cross_site"])
    if isinstance(exc, Forbidden):
        headers = () if kind is RouteKind.GRANT else _challenge(kind, "insufficient_scope")
        return Problem(403, "insufficient_scope", DESCRIPTIONS["scope"], headers)
    if isinstance(exc, NotFound | NotFoundError):
        return Problem(404, "not_found", DESCRIPTIONS["not_found"])
    if isinstance(exc, UnsupportedMediaType):
        return Problem(415, "invalid_request", DESCRIPTIONS["media_type"])
    if isinstance(exc, PayloadTooLarge):
        return Problem(413, "invalid_request", DESCRIPTIONS["too_large"])
    if isinstance(exc, Rejected):
        # InvalidRequest and any rejection without a more specific answer: the input is bad.
        return Problem(400, "invalid_request", DESCRIPTIONS["request"])
    return Problem(503, "temporarily_unavailable", DESCRIPTIONS["unavailable"], _retry_after(1))


def log_failure(exc: BaseException, problem: Problem) -> None:
    """The internal reason, for operators. tokencore messages are safe to log by contract; any
    other exception is logged by type and stack frames only, never its message (which may
    echo hostile input: ``int("<token>")`` puts the token in the message)."""
    if isinstance(exc, TokenCoreError):
        level = logging.WARNING if isinstance(exc, ServiceFault) else logging.INFO
        logger.log(
            level,
            "request_failed",
            extra={"status": problem.status, "code": exc.code, "reason": exc.message},
        )
        return
    if isinstance(exc, NotFoundError):
        logger.info("request_failed", extra={"status": problem.status, "code": "no_route"})
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error(
        "unhandled_error",
        extra={
            "status": problem.status,
            "error_type": type(exc).__name__,
            "stack": frames[-4000:],
        },
    )


def error_response(
    exc: BaseException, kind: RouteKind, *, cookies: Sequence[Cookie] = ()
) -> HttpResponse:
    """Log ``exc`` and answer it (``cookies``: set-cookies to add, e.g. clearing ones)."""
    problem = problem_for(exc, kind)
    log_failure(exc, problem)
    return json_response(
        problem.status,
        {"error": problem.error, "error_description": problem.description},
        headers=dict(problem.headers),
        cookies=cookies,
    )
