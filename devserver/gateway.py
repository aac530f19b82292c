"""API Gateway HTTP API, locally: route selection, payload 2.0 events, the Lambda authorizer,
CORS and the translation of a function's answer back to HTTP.

What it reproduces (the behaviour a client or a handler can observe):

* Routes and authorizers come from the template (``stack.ApiSpec``). Route selection prefers
  the most specific match: literal segments over ``{param}`` over ``{proxy+}``, an exact method
  over ``ANY``; then the ``$default`` route; else 404 ``{"message":"Not Found"}``.
* A route behind a Lambda authorizer: a request missing any identity source gets 401
  ``{"message":"Unauthorized"}`` and the authorizer never runs; ``isAuthorized: false`` is 403
  ``{"message":"Forbidden"}``; an authorizer that fails or answers nonsense is 500
  ``{"message":"Internal Server Error"}``; an allowed request carries the authorizer's context
  as ``requestContext.authorizer.lambda``. Results are cached per identity for the configured
  ``ReauthorizeEvery`` (the template sets 0: no caching).
* Events are payload 2.0 as API Gateway builds them: lower-cased headers with repeated ones
  joined by commas, the ``Cookie`` header moved into ``cookies``, ``queryStringParameters``
  with repeated names joined by commas, ``pathParameters``, a text body as text and anything
  else base64 with ``isBase64Encoded``.
* Answers: ``statusCode``, ``headers``, ``multiValueHeaders``, ``cookies`` (one Set-Cookie
  each), ``body`` and ``isBase64Encoded``; an answer without ``statusCode`` is a 200 JSON body.
  A function that raises is a 500 (its traceback goes to this terminal). When no function
  answers at all (no free container in time, a container that died), API Gateway's own answer
  for that case (``IntegrationError``, raised by devserver.lambdas).
* CorsConfiguration, when the template sets one: API Gateway answers preflights itself and
  its CORS headers replace the function's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from devserver.awsendpoint import loopback_host
from devserver.settings import ACCOUNT_ID, REGION
from devserver.stack import ApiSpec, AuthorizerSpec, CorsSpec, RouteSpec

MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # API Gateway's payload limit
STAGE: Final = "$default"
_HOP_BY_HOP: Final = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "te"}
)
_TEXT_TYPES: Final = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-www-form-urlencoded)|application/.*\+(json|xml))$"
)

Invoke = Callable[[str, dict[str, Any]], Any]
"""Runs a function (logical id) on an event: its result, or it raises FunctionError when the
handler raised, IntegrationError when API Gateway answers by itself."""


class FunctionError(Exception):
    """The handler raised: Lambda's function error (``errorMessage`` is ``str(error)``)."""

    def __init__(self, message: str, error_type: str, stack_trace: Sequence[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack_trace = list(stack_trace)


class IntegrationError(Exception):
    """No function answered; API Gateway answers ``status`` ``{"message": message}`` itself.
    ``reason`` is the one line for the terminal (never a request's content)."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def gateway_message(status: int, message: str) -> HttpResponse:
    """One of API Gateway's own answers (``{"message": ...}``)."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("Content-Type", "application/json")], body)


# --- routes ---------------------------------------------------------------------------------


_PARAM: Final = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    spec: RouteSpec
    segments: tuple[str, ...]

    @classmethod
    def of(cls, spec: RouteSpec) -> CompiledRoute:
        return cls(spec, tuple(spec.path.split("/")[1:]) if spec.path != "$default" else ())

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1].endswith("+}")

    @property
    def priority(self) -> tuple[int, int, int]:
        literal = sum(1 for segment in self.segments if not _PARAM.match(segment))
        return (0 if self.greedy else 1, literal, 0 if self.spec.method == "ANY" else 1)

    def match(self, method: str, parts: Sequence[str]) -> dict[str, str] | None:
        if self.spec.method not in ("ANY", method):
            return None
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            found = _PARAM.match(segment)
            if found and found.group(2):  # {name+}: the rest of the path, at least one segment
                rest = parts[index:]
                if not rest or not rest[0]:
                    return None
                params[found.group(1)] = unquote("/".join(rest))
                return params
            if index >= len(parts):
                return None
            if found:
                if not parts[index]:
                    return None
                params[found.group(1)] = unquote(parts[index])
            elif unquote(parts[index]) != segment:
                return None
        return params if len(parts) == len(self.segments) else None


class Router:
    def __init__(self, routes: Sequence[RouteSpec]) -> None:
        compiled = [CompiledRoute.of(route) for route in routes]
        self._default = next((r for r in compiled if r.spec.path == "$default"), None)
        self._routes = sorted(
            (r for r in compiled if r.spec.path != "$default"),
            key=lambda r: r.priority,
            reverse=True,
        )

    def match(self, method: str, raw_path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        parts = raw_path.split("/")[1:] if raw_path.startswith("/") else [raw_path]
        for route in self._routes:
            params = route.match(method, parts)
            if params is not None:
                return route.spec, params
        if self._default is not None:
            return self._default.spec, {}
        return None


# --- events ---------------------------------------------------------------------------------


def _header_map(headers: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-cased headers (repeats joined with commas) and the cookies, as API Gateway does."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged, cookies


def _query_map(raw_query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        values[name] = f"{values[name]},{value}" if name in values else value
    return values


def _body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    if not body:
        return None, False
    media = (content_type or "").split(";")[0].strip().lower()
    if not media or _TEXT_TYPES.match(media):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


@dataclass(frozen=True, slots=True)
class EventParts:
    """Everything both events (the route's and the authorizer's) are built from."""

    request: HttpRequest
    route: RouteSpec
    path_parameters: Mapping[str, str]
    headers: Mapping[str, str]
    cookies: Sequence[str]
    query: Mapping[str, str]
    api_id: str
    request_id: str
    now: datetime

    def request_context(self) -> dict[str, Any]:
        host = self.headers.get("host", "127.0.0.1")
        domain = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return {
            "accountId": ACCOUNT_ID,
            "apiId": self.api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": self.request.method,
                "path": self.request.raw_path,
                "protocol": self.request.protocol,
                "sourceIp": self.request.source_ip,
                "userAgent": self.headers.get("user-agent", ""),
            },
            "requestId": self.request_id,
            "routeKey": self.route.route_key,
            "stage": STAGE,
            "time": self.now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(self.now.timestamp() * 1000),
        }

    def common(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": self.route.route_key,
            "rawPath": self.request.raw_path,
            "rawQueryString": self.request.raw_query,
            "headers": dict(self.headers),
        }
        if self.cookies:
            event["cookies"] = list(self.cookies)
        if self.query:
            event["queryStringParameters"] = dict(self.query)
        if self.path_parameters:
            event["pathParameters"] = dict(self.path_parameters)
        return event

    def route_event(self, authorizer_context: Mapping[str, Any] | None) -> dict[str, Any]:
        event = self.common()
        context = self.request_context()
        if authorizer_context is not None:
            context["authorizer"] = {"lambda": dict(authorizer_context)}
        event["requestContext"] = context
        body, encoded = _body(self.request.body, self.headers.get("content-type"))
        if body is not None:
            event["body"] = body
        event["isBase64Encoded"] = encoded
        return event

    def route_arn(self) -> str:
        return (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{self.api_id}/{STAGE}/"
            f"{self.request.method}{self.request.raw_path}"
        )

    def authorizer_event(self, identity: Sequence[str]) -> dict[str, Any]:
        event: dict[str, Any] = {"version": "2.0", "type": "REQUEST", "routeArn": self.route_arn()}
        event["identitySource"] = list(identity)
        event.update(self.common())
        event["requestContext"] = self.request_context()
        return event


# --- answers --------------------------------------------------------------------------------


def translate(result: Any) -> HttpResponse:
    """A function's payload 2.0 answer as HTTP; a malformed one is API Gateway's 500."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # API Gateway's inference: a JSON value without statusCode is a 200 JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], text.encode())
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return _malformed("statusCode is not an HTTP status")
    response = HttpResponse(status)
    headers = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    cookies = result.get("cookies") or []
    if (
        not isinstance(headers, dict)
        or not isinstance(multi, dict)
        or not isinstance(cookies, list)
    ):
        return _malformed("headers, multiValueHeaders or cookies have the wrong type")
    seen: set[str] = set()
    for name, values in multi.items():
        if name.lower() in _HOP_BY_HOP or not isinstance(values, list):
            continue
        seen.add(name.lower())
        response.headers.extend((str(name), _text(value)) for value in values)
    for name, value in headers.items():
        if name.lower() in _HOP_BY_HOP or name.lower() in seen:
            continue
        response.headers.append((str(name), _text(value)))
    response.headers.extend(("Set-Cookie", _text(cookie)) for cookie in cookies)
    body = result.get("body")
    if body is None:
        return response
    if not isinstance(body, str):
        return _malformed("body is not a string")
    if result.get("isBase64Encoded") is True:
        try:
            response.body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _malformed("body is not base64")
    else:
        response.body = body.encode("utf-8")
    return response


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _malformed(why: str) -> HttpResponse:
    print(f"devserver: malformed Lambda response ({why}): 500", file=sys.stderr)
    return gateway_message(500, "Internal Server Error")


# --- the gateway ----------------------------------------------------------------------------


def _foreign_request(host: str | None, origin: str | None, raw_path: str) -> HttpResponse | None:
    """403 for a Host that is not loopback (DNS rebinding: a page of the attacker's name that
    resolves to 127.0.0.1), and for another origin's request to the stack's own ``/_dev/``
    routes; None for everything else (the API's routes keep API Gateway's CORS)."""
    if host is not None and not loopback_host(host):
        return gateway_message(403, "Forbidden")
    if raw_path.startswith("/_dev/") and origin is not None and origin != f"http://{host}":
        return gateway_message(403, "Forbidden")
    return None


@dataclass(frozen=True, slots=True)
class AuthorizerVerdict:
    allowed: bool
    context: Mapping[str, Any] | None = None
    failure: HttpResponse | None = None


class Gateway:
    """One HTTP API: ``handle`` turns a request into a response."""

    def __init__(
        self, api: ApiSpec, invoke: Invoke, *, before_request: Callable[[], None] | None = None
    ) -> None:
        self.api = api
        self._invoke = invoke
        self._before_request = before_request
        self._router = Router(api.routes)
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, AuthorizerVerdict]] = {}
        self._cache_lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        headers, cookies = _header_map(request.headers)
        # API Gateway sets the scheme the client used (https); this stack serves http.
        headers["x-forwarded-proto"] = "http"
        origin = headers.get("origin")
        cors = self.api.cors
        request_id = secrets.token_urlsafe(12)
        if self._before_request is not None:
            self._before_request()
        if cors is not None and _is_preflight(request.method, headers):
            # With a CorsConfiguration, API Gateway answers every preflight itself.
            response = _preflight(cors, origin, headers)
        else:
            response = self._route(request, headers, cookies, request_id)
            if cors is not None:
                _apply_cors(response, cors, origin)
        response.headers.append(("apigw-requestid", request_id))
        return response

    def route_key(self, method: str, raw_path: str) -> str | None:
        """The route template a request matches (``DELETE /auth/sessions/{session_id}``)."""
        found = self._router.match(method, raw_path)
        return None if found is None else found[0].route_key

    def _route(
        self, request: HttpRequest, headers: dict[str, str], cookies: list[str], request_id: str
    ) -> HttpResponse:
        found = self._router.match(request.method, request.raw_path)
        if found is None:
            return gateway_message(404, "Not Found")
        route, params = found
        parts = EventParts(
            request=request,
            route=route,
            path_parameters=params,
            headers=headers,
            cookies=cookies,
            query=_query_map(request.raw_query),
            api_id=self.api.api_id,
            request_id=request_id,
            now=datetime.now(UTC),
        )
        context: Mapping[str, Any] | None = None
        if route.authorizer is not None:
            verdict = self._authorize(self.api.authorizers[route.authorizer], parts)
            if verdict.failure is not None:
                return verdict.failure
            context = verdict.context or {}
        try:
            result = self._invoke(route.function, parts.route_event(context))
        except IntegrationError as failure:
            return _integration_failed(failure)
        except Exception as exc:  # noqa: BLE001 - whatever a function raises, API Gateway answers 500
            print(f"devserver: {route.function} raised; API Gateway answers 500", file=sys.stderr)
            _print_trace(exc)
            return gateway_message(500, "Internal Server Error")
        return translate(result)

    def _authorize(self, spec: AuthorizerSpec, parts: EventParts) -> AuthorizerVerdict:
        identity = _identity(spec, parts)
        if identity is None:
            return AuthorizerVerdict(False, failure=gateway_message(401, "Unauthorized"))
        key = (spec.name, tuple(identity))
        if spec.ttl_seconds > 0:
            with self._cache_lock:
                cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        verdict = self._run_authorizer(spec, parts, identity)
        cacheable = verdict.failure is None or verdict.failure.status == 403
        if spec.ttl_seconds > 0 and cacheable:
            with self._cache_lock:
                self._cache[key] = (time.monotonic() + spec.ttl_seconds, verdict)
        return verdict

    def _run_authorizer(
        self, spec: AuthorizerSpec, parts: EventParts, identity: Sequence[str]
    ) -> AuthorizerVerdict:
        try:
            result = self._invoke(spec.function, parts.authorizer_event(identity))
        except IntegrationError as failure:
            return AuthorizerVerdict(False, failure=_integration_failed(failure))
        except Exception as exc:  # noqa: BLE001 - an authorizer error is API Gateway's 401/500
            if str(exc) == "Unauthorized":
                return AuthorizerVerdict(False, failure=gateway_message(401, "Unauthorized"))
            print(f"devserver: authorizer {spec.function} raised: 500", file=sys.stderr)
            _print_trace(exc)
            return AuthorizerVerdict(False, failure=gateway_message(500, "Internal Server Error"))
        if not isinstance(result, dict):
            return _authorizer_malformed("not an object")
        context = result.get("context")
        if context is not None and not isinstance(context, dict):
            return _authorizer_malformed("context is not an object")
        if spec.simple_responses:
            allowed = result.get("isAuthorized")
            if not isinstance(allowed, bool):
                return _authorizer_malformed("isAuthorized is not a boolean")
        else:
            allowed = _policy_allows(result.get("policyDocument"), parts.route_arn())
            if allowed is None:
                return _authorizer_malformed("policyDocument is malformed")
        if not allowed:
            return AuthorizerVerdict(False, failure=gateway_message(403, "Forbidden"))
        return AuthorizerVerdict(True, context=context or {})


def _integration_failed(failure: IntegrationError) -> HttpResponse:
    print(f"devserver: {failure.reason}; API Gateway answers {failure.status}", file=sys.stderr)
    return gateway_message(failure.status, failure.message)


def _print_trace(error: Exception) -> None:
    """The traceback of a handler's exception: the container's own when it comes from one."""
    if isinstance(error, FunctionError) and error.stack_trace:
        print("".join(error.stack_trace), end="", file=sys.stderr)
    else:
        traceback.print_exception(error, file=sys.stderr)


def _authorizer_malformed(why: str) -> AuthorizerVerdict:
    print(f"devserver: malformed authorizer response ({why}): 500", file=sys.stderr)
    return AuthorizerVerdict(False, failure=gateway_message(500, "Internal Server Error"))


def _identity(spec: AuthorizerSpec, parts: EventParts) -> list[str] | None:
    """The identity source values, or None when one is missing (API Gateway's 401)."""
    values: list[str] = []
    for source in spec.identity_sources:
        value: object = None
        if source.startswith("$request.header."):
            value = parts.headers.get(source.removeprefix("$request.header.").lower())
        elif source.startswith("$request.querystring."):
            value = parts.query.get(source.removeprefix("$request.querystring."))
        elif source.startswith("$context."):
            value = parts.request_context()
            for step in source.removeprefix("$context.").split("."):
                value = value.get(step) if isinstance(value, dict) else None
        if not isinstance(value, str | int) or value == "":
            return None
        values.append(str(value))
    return values


def _policy_allows(document: object, route_arn: str) -> bool | None:
    """An IAM policy answer: allowed when a statement allows the route and none denies it."""
    if not isinstance(document, dict) or not isinstance(document.get("Statement"), list):
        return None
    allowed = False
    for statement in document["Statement"]:
        if not isinstance(statement, dict):
            return None
        resources = statement.get("Resource")
        resources = [resources] if isinstance(resources, str) else resources or []
        if not any(_arn_matches(str(pattern), route_arn) for pattern in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _arn_matches(pattern: str, arn: str) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, arn) is not None


def _is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


def _origin_allowed(cors: CorsSpec, origin: str | None) -> str | None:
    if not origin:
        return None
    if origin in cors.allow_origins:
        return origin
    if "*" in cors.allow_origins:
        return origin if cors.allow_credentials else "*"
    return None


def _preflight(cors: CorsSpec, origin: str | None, headers: Mapping[str, str]) -> HttpResponse:
    response = HttpResponse(204)
    allowed = _origin_allowed(cors, origin)
    if allowed is None:
        return response
    response.headers.append(("Access-Control-Allow-Origin", allowed))
    if cors.allow_credentials:
        response.headers.append(("Access-Control-Allow-Credentials", "true"))
    if cors.allow_methods:
        response.headers.append(("Access-Control-Allow-Methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        requested = headers.get("access-control-request-headers", "")
        allow = cors.allow_headers if "*" not in cors.allow_headers else (requested,)
        response.headers.append(("Access-Control-Allow-Headers", ",".join(allow)))
    if cors.max_age is not None:
        response.headers.append(("Access-Control-Max-Age", str(cors.max_age)))
    response.headers.append(("Vary", "Origin"))
    return response


def _apply_cors(response: HttpResponse, cors: CorsSpec, origin: str | None) -> None:
    """API Gateway's CORS headers replace whatever the function sent."""
    response.headers = [
        (name, value)
        for name, value in response.headers
        if not name.lower().startswith("access-control-")
    ]
    allowed = _origin_allowed(cors, origin)
    if allowed is None:
        return
    response.headers.append(("Access-Control-Allow-Origin", allowed))
    if cors.allow_credentials:
        response.headers.append(("Access-Control-Allow-Credentials", "true"))
    if cors.expose_headers:
        response.headers.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
    response.headers.append(("Vary", "Origin"))


# --- HTTP -----------------------------------------------------------------------------------


class ApiServer(ThreadingHTTPServer):
    """Bound at construction (so a busy port fails before anything else starts); serves once
    ``gateway`` is set.

    One thread per connection (kept while the client keeps the connection alive). The listen
    backlog is 1024 instead of socketserver's 5: a burst of clients connecting at once is
    queued by the kernel, even while this process is busy, instead of having its connections
    dropped or reset (capped by the kernel's net.core.somaxconn, 4096 on current Linux)."""

    daemon_threads = True
    request_queue_size = 1024
    gateway: Gateway | None = None
    # Pages served before API routing (the browser demo, devserver.static); None: API only.
    pages: Callable[[HttpRequest], HttpResponse | None] | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            print(
                f"devserver: {client_address[0]} went away ({type(error).__name__})",
                file=sys.stderr,
            )
            return
        super().handle_error(request, client_address)


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def version_string(self) -> str:
        return "tokencore-devserver"

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            return
        raw_path, _, raw_query = self.path.partition("?")
        if not raw_path.startswith("/"):  # an absolute-form target: keep the path only
            raw_path = "/" + raw_path.split("://", 1)[-1].partition("/")[2]
        request = HttpRequest(
            method=self.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        gateway = self.server.gateway
        pages = self.server.pages
        refusal = _foreign_request(self.headers.get("Host"), self.headers.get("Origin"), raw_path)
        page = None if refusal is not None or pages is None else pages(request)
        logged = raw_path if page is not None and page.status < 400 else None
        if refusal is not None:
            response = refusal
        elif page is not None:
            response = page
        elif gateway is None:
            response = gateway_message(503, "Service Unavailable")
        else:
            response = gateway.handle(request)
            logged = gateway.route_key(request.method, raw_path)
        elapsed = (time.monotonic() - started) * 1000
        # The route template (never the raw path: it holds session and user ids), or the
        # stack's own page, and the status: query strings and headers may carry tokens. Logged
        # before the answer is sent, so a client that has its answer finds the line already
        # written (tests read this log instead of waiting for it).
        print(
            f'{self.client_address[0]} "{logged or self.command + " (no route)"}" '
            f"{response.status} {elapsed:.0f} ms",
            file=sys.stderr,
        )
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            self._send(gateway_message(400, "Bad Request"))
            self.close_connection = True
            return None
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._send(gateway_message(413, "Request Entity Too Large"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024).strip()
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                self._send(gateway_message(400, "Bad Request"))
                self.close_connection = True
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                self._send(gateway_message(413, "Request Entity Too Large"))
                self.close_connection = True
                return None
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _serve logs method, path and status (never the query string)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"devserver: {format % args}", file=sys.stderr)

    def log_error(self, format: str, *args: Any) -> None:
        """http.server's own refusals (a malformed request line, an oversized header): the
        status only. Its message quotes the raw request line, which may hold a token."""
        code = args[0] if args and isinstance(args[0], int) else "-"
        print(f"devserver: refused a malformed request ({code})", file=sys.stderr)
