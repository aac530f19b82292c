"""The Lambda authorizer: one handler for HTTP API (payload 2.0, simple responses), REST TOKEN
and REST REQUEST events, told apart by the event itself.

Thin on purpose: parse the event into a ``tokencore.authz.AuthzRequest``, call
``Authorizer.authorize`` (built once per container by its ``Runtime``), shape the answer. Every
failure denies and nothing raises but "Unauthorized"; faults deny with 403, never 401, so an
outage never turns into a login storm. docs/authorizer.md has the verification order, the
answers per event kind, caching, metrics and speed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger

from tokencore import wire
from tokencore.audit import hash_identifier
from tokencore.authz import (
    Authorizer,
    AuthzRequest,
    AuthzTrace,
    Grant,
    RouteForbidden,
)
from tokencore.config import RoleRule
from tokencore.emf import CountMetrics
from tokencore.errors import InvalidRequest, Rejected, ServiceFault
from tokencore.policy import SessionCheckReason, pattern_segments
from tokencore.runtime import get_runtime
from tokencore.tokens import AccessClaims

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponse,
        APIGatewayRouteArn,
    )

SERVICE: Final = os.environ.get("POWERTOOLS_SERVICE_NAME") or "tokencore-authorizer"
NAMESPACE: Final = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "tokencore"
UNAUTHORIZED: Final = "Unauthorized"  # API Gateway maps exactly this error message to 401
INTERNAL_ERROR: Final = "internal_error"

logger = Logger(service=SERVICE)
metrics = CountMetrics(namespace=NAMESPACE, service=SERVICE)
# The standard logger behind Powertools' (same object): asked whether DEBUG is on before the
# allow line's fields are built.
_log_target = logging.getLogger(logger.name)

_MAX_PATH_LENGTH: Final = 8192
_MAX_ARN_LENGTH: Final = 2048
# Powertools' HttpVerb without ALL (a test keeps them equal): spelled out, because importing
# Powertools' data classes costs an HTTP API authorizer's cold start about 20 ms for nothing.
_VERBS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS"})
# arn:<partition>:execute-api:<region>:<account>:<apiId>/<stage>/<VERB>[/<path>]
_METHOD_ARN: Final = re.compile(
    r"arn:(aws[a-z-]{0,20}):execute-api:([a-z0-9-]{1,32}):([0-9]{12}):([A-Za-z0-9]{1,32})"
    r"/([A-Za-z0-9_-]{1,128}|\*)/([A-Z]{1,16})(/[!-~]*)?"
)
_METHOD: Final = re.compile(r"[A-Z]{1,16}")
_REASON: Final = re.compile(r"[a-z][a-z0-9_]{0,47}")
_ID: Final = re.compile(r"[A-Za-z0-9=._-]{1,64}")


class EventKind(StrEnum):
    HTTP = "http"
    REST_TOKEN = "rest_token"
    REST_REQUEST = "rest_request"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    FAULT = "fault"


class MalformedEvent(InvalidRequest):
    """The event is not a well-formed API Gateway authorizer event."""

    code = "malformed_event"


# Per-request records, not frozen: a frozen dataclass costs about 1.5 us to build.
@dataclass(slots=True)
class ParsedEvent:
    request: AuthzRequest
    arn: APIGatewayRouteArn | None = None  # REST: the method ARN the policy is built around


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    reason: str  # "allow", or the deny reason: an error code
    parsed: ParsedEvent | None = None
    grant: Grant | None = None
    claims: AccessClaims | None = None
    session_check: SessionCheckReason | None = None
    where: str | None = None  # internal errors only: file:line of the failure
    rule: RoleRule | None = None  # route denials: the ROUTE_ROLES rule that refused


# --- handler --------------------------------------------------------------------------------


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Never allows on error; raises nothing but ``Exception("Unauthorized")`` (REST 401)."""
    kind = EventKind.UNKNOWN
    try:
        kind = event_kind(event)
        response = _respond(kind, event, context)
    except Exception:  # noqa: BLE001 - the last line of defence: deny, never raise
        response = _fail_closed(kind)
    _flush_metrics()
    if response is None:
        raise Exception(UNAUTHORIZED)  # noqa: TRY002 - the exact shape API Gateway expects
    return response


def _respond(kind: EventKind, event: Any, context: Any) -> dict[str, Any] | None:
    outcome = _decide(kind, event)
    try:
        response = _shape(kind, outcome)
    except Exception as exc:  # noqa: BLE001 - a response we cannot build is a denial
        outcome = Outcome(Verdict.FAULT, INTERNAL_ERROR, claims=outcome.claims, where=_where(exc))
        response = _fail_closed(kind)
    _observe(kind, outcome, event, context)
    return response


def _decide(kind: EventKind, event: Any) -> Outcome:
    """Parse, authorize, classify. Never raises."""
    trace = AuthzTrace()
    parsed: ParsedEvent | None = None
    try:
        parsed = parse_event(kind, event)
        grant = _authorizer().authorize(parsed.request, trace)
    except RouteForbidden as exc:
        return Outcome(
            Verdict.FORBIDDEN,
            exc.code,
            parsed,
            None,
            exc.claims,
            trace.session_check,
            rule=exc.rule,
        )
    except Rejected as exc:
        return Outcome(
            Verdict.UNAUTHENTICATED, exc.code, parsed, None, trace.claims, trace.session_check
        )
    except ServiceFault as exc:
        return Outcome(Verdict.FAULT, exc.code, parsed, None, trace.claims, trace.session_check)
    except Exception as exc:  # noqa: BLE001 - a bug denies like a fault, and is reported
        return Outcome(
            Verdict.FAULT,
            INTERNAL_ERROR,
            parsed,
            None,
            trace.claims,
            trace.session_check,
            _where(exc),
        )
    return Outcome(Verdict.ALLOW, "allow", parsed, grant, grant.claims, grant.session_check)


def _authorizer() -> Authorizer:
    """Built once per container, by its Runtime (tests and the local stack install their own)."""
    return get_runtime().authorizer


# --- events -----------------------------------------------------------------------------------


def event_kind(event: object) -> EventKind:
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    if event.get("version") == "2.0":
        return EventKind.HTTP
    kind = event.get("type")
    if kind == "TOKEN":
        return EventKind.REST_TOKEN
    if kind == "REQUEST":
        return EventKind.REST_REQUEST
    return EventKind.UNKNOWN


def parse_event(kind: EventKind, event: dict[str, Any]) -> ParsedEvent:
    """The request as the authorizer sees it; MalformedEvent when the event is not one.

    Read from the raw event dict, not through Powertools' event classes: those cost more per
    request than everything else the authorizer does besides the signature check (``make
    bench``), and every field is checked here anyway."""
    try:
        if kind is EventKind.HTTP:
            return _parse_http(event)
        if kind is EventKind.REST_TOKEN:
            return _parse_rest_token(event)
        if kind is EventKind.REST_REQUEST:
            return _parse_rest_request(event)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise MalformedEvent("event is missing fields or has wrong types") from exc
    raise MalformedEvent("not an API Gateway authorizer event")


def _parse_http(event: dict[str, Any]) -> ParsedEvent:
    # Headers are read by hand: a name repeated in two spellings must be refused, not resolved
    # to whichever came last.
    headers = _lowercase_headers(event.get("headers"))
    context = event["requestContext"]
    path = _strip_stage(_path(event["rawPath"]), context.get("stage"))
    cookies = wire.cookie_pairs(wire.cookie_pieces(event.get("cookies"), headers.get(wire.COOKIE)))
    request = AuthzRequest(
        authorization=headers.get(wire.AUTHORIZATION),
        method=_method(context["http"]["method"]),
        path=path,
        route_path=_route_template(event.get("routeKey")),
        fingerprint=wire.cookie_value(cookies, wire.FINGERPRINT_COOKIE),
        device_id=wire.device_id_or_none(headers.get(wire.DEVICE_ID_HEADER)),
    )
    return ParsedEvent(request)


def _parse_rest_token(event: dict[str, Any]) -> ParsedEvent:
    arn = _method_arn(event.get("methodArn"))
    request = AuthzRequest(
        authorization=event.get("authorizationToken"),
        method=str(arn.http_method),
        path="/" + arn.resource,
        cookies_visible=False,  # a TOKEN authorizer receives one header and nothing else
    )
    return ParsedEvent(request, arn)


def _parse_rest_request(event: dict[str, Any]) -> ParsedEvent:
    arn = _method_arn(event.get("methodArn"))
    headers = _lowercase_headers(event.get("headers"), event.get("multiValueHeaders"))
    method = event.get("httpMethod")
    if method is not None and method != arn.http_method:
        raise MalformedEvent("httpMethod does not match the method ARN")
    context = event.get("requestContext")
    resource_path = context.get("resourcePath") if isinstance(context, dict) else None
    path = event.get("path") or resource_path or "/" + arn.resource
    template = event.get("resource") or resource_path
    cookies = wire.cookie_pairs(headers.get(wire.COOKIE))
    request = AuthzRequest(
        authorization=headers.get(wire.AUTHORIZATION),
        method=str(arn.http_method),
        path=_path(path),
        route_path=_path(template) if template is not None else None,
        fingerprint=wire.cookie_value(cookies, wire.FINGERPRINT_COOKIE),
        device_id=wire.device_id_or_none(headers.get(wire.DEVICE_ID_HEADER)),
    )
    return ParsedEvent(request, arn)


def _lowercase_headers(headers: object, multi: object = None) -> dict[str, object]:
    """Header names lowercased, a repeated header as a list (``wire.header_map``)."""
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        raise MalformedEvent("headers are not an object")
    return wire.header_map(headers, multi)


def _method_arn(value: object) -> APIGatewayRouteArn:
    if not isinstance(value, str) or len(value) > _MAX_ARN_LENGTH:
        raise MalformedEvent("method ARN is missing or too long")
    match = _METHOD_ARN.fullmatch(value)
    if match is None or match.group(6) not in _VERBS:
        raise MalformedEvent("method ARN is not an execute-api method ARN")
    partition, region, account, api_id, stage, verb, path = match.groups()
    # Powertools' REST shapes are imported by the first REST event, never by an HTTP API's.
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayRouteArn,
    )

    return APIGatewayRouteArn(
        region=region,
        aws_account_id=account,
        api_id=api_id,
        stage=stage,
        http_method=verb,
        resource=path or "",
        partition=partition,
    )


def _method(value: object) -> str:
    if not isinstance(value, str) or not _METHOD.fullmatch(value):
        raise MalformedEvent("method is missing or malformed")
    return value


def _path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > _MAX_PATH_LENGTH:
        raise MalformedEvent("path is missing or malformed")
    return value


def _strip_stage(raw_path: str, stage: object) -> str:
    """HTTP API puts a named stage in rawPath (``/prod/me``); routes never include it."""
    if not isinstance(stage, str) or not stage or stage == "$default":
        return raw_path
    prefix = "/" + stage
    if raw_path == prefix:
        return "/"
    if raw_path.startswith(prefix + "/"):
        return raw_path[len(prefix) :]
    return raw_path


def _route_template(route_key: object) -> str | None:
    """The path of an HTTP API route key (``POST /admin/users/{user_id}/revoke``), if any."""
    if not isinstance(route_key, str):
        return None
    _, sep, path = route_key.partition(" ")
    if not sep:
        return None  # "$default": no template to check
    return _path(path)


# --- responses --------------------------------------------------------------------------------


def _shape(kind: EventKind, outcome: Outcome) -> dict[str, Any] | None:
    if kind is EventKind.HTTP:
        if outcome.verdict is Verdict.ALLOW and outcome.grant is not None:
            # APIGatewayAuthorizerResponseV2's shape, as a literal (the context is never empty).
            return {"isAuthorized": True, "context": outcome.grant.flat_context()}
        return {"isAuthorized": False}
    if kind is EventKind.UNKNOWN:
        return None
    return _rest_answer(outcome)


def _rest_answer(outcome: Outcome) -> dict[str, Any] | None:
    verdict = outcome.verdict
    if verdict is Verdict.UNAUTHENTICATED:
        return None
    if verdict is Verdict.FAULT:
        return _deny_all()
    parsed, claims = outcome.parsed, outcome.claims
    if parsed is None or parsed.arn is None or claims is None:
        raise ValueError("an allow or a route denial needs the method ARN and the claims")
    if verdict is Verdict.ALLOW and outcome.grant is not None:
        context = outcome.grant.flat_context()
        return _principal_policy(parsed.arn, claims, context).asdict()
    # A valid token refused on this route: the principal's policy, which stays right for the
    # caller's other routes if cached, plus an explicit Deny on exactly this method ARN.
    policy = _principal_policy(parsed.arn, claims, None)
    try:
        policy.deny_route(str(parsed.arn.http_method), "/" + parsed.arn.resource)
    except ValueError:  # a path the policy grammar cannot express: deny the whole API
        policy.deny_all_routes()
    return policy.asdict()


def _principal_policy(
    arn: APIGatewayRouteArn, claims: AccessClaims, context: dict[str, Any] | None
) -> APIGatewayAuthorizerResponse:
    """Everything this principal may call: the whole API, minus every ROUTE_ROLES route it
    lacks a role for. Cache-safe: API Gateway applies a cached policy to the caller's other
    routes."""
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponse,
    )

    policy = APIGatewayAuthorizerResponse(
        principal_id=claims.subject,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=context,
        partition=arn.partition,
    )
    policy.allow_all_routes()
    for rule in _authorizer().policy.unmet_rules(claims.roles):
        for verb, resource in _rule_resources(rule):
            policy.deny_route(verb, resource)
    return policy


def _rule_resources(rule: RoleRule) -> list[tuple[str, str]]:
    """The (verb, resource) pairs of a rule in method-ARN form: each verb for ``*`` (an ARN
    ``*`` in the verb position would span slashes), and a subtree as its root plus ``/*``."""
    pattern = rule.pattern
    verbs = sorted(_VERBS) if pattern.method == "*" else [pattern.method]
    segments = pattern_segments(pattern)
    if segments and segments[-1] == "*" and pattern.path.endswith("/*"):
        root = "/".join(segments[:-1])
        resources = [root, f"{root}/*"] if root else ["*"]
    else:
        resources = ["/".join(segments)]
    return [(verb, resource) for verb in verbs for resource in resources]


def _deny_all() -> dict[str, Any]:
    """Powertools' DENY_ALL_RESPONSE (a test keeps them equal), a fresh copy each time: a
    literal, so the fail-closed answer imports nothing and cannot fail."""
    return {
        "principalId": "deny-all-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ["*"]}],
        },
    }


def _fail_closed(kind: EventKind) -> dict[str, Any] | None:
    """The answer when something unexpected failed; builds nothing that could fail."""
    if kind is EventKind.HTTP:
        return {"isAuthorized": False}
    if kind is EventKind.UNKNOWN:
        return None
    return _deny_all()


# --- observability ----------------------------------------------------------------------------


def _observe(kind: EventKind, outcome: Outcome, event: Any, context: Any) -> None:
    """Log and count one answer. Never raises: a broken log line must not change an answer."""
    try:
        _count(outcome)
        if outcome.verdict is not Verdict.ALLOW or _log_target.isEnabledFor(logging.DEBUG):
            _log(kind, outcome, _correlation(event, context))
    except Exception as exc:  # noqa: BLE001 - reported on stderr, answer unchanged
        _observability_failed("observe", exc)


def _count(outcome: Outcome) -> None:
    if outcome.session_check is not None:
        # Its own EMF document: one document carries one dimension set.
        metrics.add("SessionCheck", "reason", outcome.session_check.value)
    if outcome.verdict is Verdict.ALLOW:
        metrics.add("AuthorizerAllow")
    else:
        metrics.add("AuthorizerDeny", "reason", _metric_reason(outcome.reason))
    if outcome.verdict is Verdict.FAULT:
        # Our failure (a bug, the key source, the session store): answered with a deny, never
        # a Lambda error, so the AuthorizerFaultAlarm counts these, not AWS/Lambda Errors.
        metrics.add("AuthorizerFault", "reason", _metric_reason(outcome.reason))


def _log(kind: EventKind, outcome: Outcome, correlation: dict[str, str]) -> None:
    fields: dict[str, object] = {
        **correlation,
        "event_kind": kind.value,
        "verdict": outcome.verdict.value,
        "reason": _metric_reason(outcome.reason),
    }
    if outcome.verdict is not Verdict.ALLOW:
        # Denies are security events (by reason), like tokencore.audit's lines.
        fields["security_event"] = "authorizer_denied"
    if outcome.claims is not None:
        fields["session_hash"] = hash_identifier(outcome.claims.session_id)
    if outcome.session_check is not None:
        fields["session_check"] = outcome.session_check.value
    if outcome.rule is not None:
        # Configuration, not input: which ROUTE_ROLES rule refused the route.
        fields["route_rule"] = str(outcome.rule)
    if outcome.verdict is Verdict.ALLOW:
        logger.debug("authorizer allowed", extra=fields)
    elif outcome.reason == INTERNAL_ERROR:
        logger.error("authorizer failed", extra={**fields, "where": outcome.where})
    elif outcome.verdict is Verdict.FAULT:
        logger.warning("authorizer denied on a fault", extra=fields)
    else:
        logger.info("authorizer denied", extra=fields)


def _correlation(event: Any, context: Any) -> dict[str, str]:
    """API Gateway's request id and Lambda's, when they look like ids (never other input)."""
    ids: dict[str, str] = {}
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if isinstance(request_id, str) and _ID.fullmatch(request_id):
        ids["correlation_id"] = request_id
    function_request_id = getattr(context, "aws_request_id", None)
    if isinstance(function_request_id, str) and _ID.fullmatch(function_request_id):
        ids["function_request_id"] = function_request_id
    return ids


def _flush_metrics() -> None:
    try:
        metrics.flush_metrics()
    except Exception as exc:  # noqa: BLE001 - metrics must never change an answer
        metrics.clear_metrics()
        _observability_failed("metrics", exc)


def _metric_reason(code: str) -> str:
    """Codes come from class attributes; anything else collapses to one bucket."""
    return code if _REASON.fullmatch(code) else "other"


def _where(exc: BaseException) -> str:
    """file:line where ``exc`` was raised: enough to find a bug, and never a value from the
    request (exception messages may quote input)."""
    tb = exc.__traceback__
    if tb is None:
        return type(exc).__name__
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.basename(tb.tb_frame.f_code.co_filename)
    return f"{type(exc).__name__} at {filename}:{tb.tb_lineno}"


def _observability_failed(what: str, exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # nowhere left to report to
        sys.stderr.write(f"authorizer {what} failed: {_where(exc)}\n")


# Last line of the cold start: everything imported so far lives as long as the container, so
# it is moved out of the garbage collector's reach. A full collection in a warm container then
# scans only what requests created (about 4 ms before, under 0.01 ms after, on the reference
# machine), instead of stalling whichever request triggers it (budget 7 measures that tail).
gc.freeze()
