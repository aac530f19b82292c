"""AWS fault injection in the local stack's embedded endpoint (``make load``'s chaos).

``FaultInjector.wrap`` is WSGI middleware for ``devserver.awsendpoint.EmbeddedAws``: it fails a
share of the AWS requests the functions make, by kind, as the real services would:

* ``throttle``: DynamoDB's ``ProvisionedThroughputExceededException`` or ``ThrottlingException``
  (``ThrottlingException`` for Secrets Manager, SSM and KMS), a 400 answered before anything is
  applied;
* ``error``: the service's own 500 (``InternalServerError``, ``InternalServiceError``,
  ``KMSInternalException``), before anything is applied;
* ``lost``: the request IS applied, then the connection is closed without an answer. This is
  what a timeout looks like to a client: it cannot tell whether the write happened, and its
  retry meets the state the first attempt left.

Only JSON-protocol requests of the services the functions call (DynamoDB, Secrets Manager,
SSM, KMS; told apart by ``X-Amz-Target``) are eligible. A request whose User-Agent carries
``app/<EXEMPT_APP_ID>`` is never faulted: botocore adds it for ``Config(user_agent_appid=...)``
or ``AWS_SDK_UA_APP_ID``, so a load tool's inspection client and an operator command run during
the chaos (``make ctl``) pass untouched.

A lost response is only as realistic as the retry that follows it: DynamoDB answers a repeated
TransactWriteItems with the same ``ClientRequestToken`` (within ten minutes, same request)
with the first attempt's success instead of running it again, and moto does not. The
injector keeps that promise for the requests it passes (``IdempotentTransactions``), so a
retried login transaction meets DynamoDB's behaviour, not moto's.

The injector runs in the embedded endpoint's own process (devserver.awsprocess); the stack
holds ``EndpointFaults``, whose ``wrap`` (``InjectorWrap``: a pipe end and the settings, no
state) crosses to that process by pickling and builds the ``FaultInjector`` there. The plan and
the counters travel over that pipe, one control message per ``/_dev/faults`` call, never one
per AWS request: no network surface besides the API port's guarded route.

The injector starts with a rate of 0, so the stack's own provisioning is never faulted. It is
controlled at run time on the API port, guarded exactly like ``/_dev/clock``
(devserver.clock: the stack listens on 127.0.0.1 only, the POST takes only a JSON body, so a web
page of another origin would need a CORS preflight, which is never granted):

* ``GET /_dev/faults``: the plan and the counters (requests seen and faults injected, per kind
  and operation);
* ``POST /_dev/faults`` with ``{"rate": 0.1, "kinds": [...], "services": [...], "seed": n}``:
  a new plan (``kinds`` and ``services`` default to all, ``seed`` to none); answers the same.

``DEV_FAULT_CONTROL=0`` turns the route off; ``DEV_FAULTS`` (the same JSON) is a plan applied
once the stack is provisioned.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

from devserver.awsendpoint import WsgiApp
from devserver.clock import JSON_ONLY

if TYPE_CHECKING:  # the endpoint's process needs the injector only, not the gateway
    from devserver.gateway import HttpRequest, HttpResponse

FAULTS_PATH: Final = "/_dev/faults"
ENABLE_VARIABLE: Final = "DEV_FAULT_CONTROL"
PLAN_VARIABLE: Final = "DEV_FAULTS"
EXEMPT_APP_ID: Final = "tokencore-no-faults"
_EXEMPT_MARKER: Final = f"app/{EXEMPT_APP_ID}"

THROTTLE: Final = "throttle"
ERROR: Final = "error"
LOST: Final = "lost"
KINDS: Final = (THROTTLE, ERROR, LOST)

# X-Amz-Target prefix -> service name; the operation follows the prefix.
_TARGETS: Final = {
    "DynamoDB_20120810.": "dynamodb",
    "secretsmanager.": "secretsmanager",
    "AmazonSSM.": "ssm",
    "TrentService.": "kms",
}
SERVICES: Final = tuple(_TARGETS.values())

_DYNAMODB_ERROR: Final = "com.amazonaws.dynamodb.v20120810#"
# What each service answers when it throttles (400) or fails internally (500).
_THROTTLE_CODES: Final = {
    "dynamodb": (
        _DYNAMODB_ERROR + "ProvisionedThroughputExceededException",
        _DYNAMODB_ERROR + "ThrottlingException",
    ),
    "secretsmanager": ("ThrottlingException",),
    "ssm": ("ThrottlingException",),
    "kms": ("ThrottlingException",),
}
_ERROR_CODES: Final = {
    "dynamodb": _DYNAMODB_ERROR + "InternalServerError",
    "secretsmanager": "InternalServiceError",
    "ssm": "InternalServerError",
    "kms": "KMSInternalException",
}
_JSON: Final = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_TRANSACT_WRITE: Final = "DynamoDB_20120810.TransactWriteItems"
IDEMPOTENCY_WINDOW_SECONDS: Final = 600  # DynamoDB's, for ClientRequestToken
CONTROL_TIMEOUT_SECONDS: Final = 30.0  # the endpoint answers a control message at once
_SPAWN: Final = multiprocessing.get_context("spawn")  # as devserver.awsprocess starts it


@dataclass(frozen=True, slots=True)
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    services: tuple[str, ...] = SERVICES
    seed: int | None = None

    @classmethod
    def from_document(cls, document: object) -> FaultPlan:
        """A plan from its JSON form; ValueError names what is wrong."""
        if not isinstance(document, dict):
            raise ValueError("send a JSON object")  # noqa: TRY004 - one error type for bad input
        unknown = set(document) - {"rate", "kinds", "services", "seed"}
        if unknown:
            raise ValueError(f"unknown members: {', '.join(sorted(unknown))}")
        rate = document.get("rate")
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not 0 <= rate <= 1
        ):
            raise ValueError("rate must be a number from 0 to 1")
        kinds = _names(document.get("kinds", list(KINDS)), KINDS, "kinds")
        services = _names(document.get("services", list(SERVICES)), SERVICES, "services")
        seed = document.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        return cls(float(rate), kinds, services, seed)

    def document(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kinds": list(self.kinds),
            "services": list(self.services),
            "seed": self.seed,
        }


def _names(value: object, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and item in allowed for item in value)
    ):
        raise ValueError(f"{what} must be a non-empty list drawn from {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str
    service: str
    code: str  # the AWS error code answered (throttle, error)


_MISMATCH: Final = _Fault(
    ERROR, "dynamodb", _DYNAMODB_ERROR + "IdempotentParameterMismatchException"
)
_IN_PROGRESS: Final = _Fault(ERROR, "dynamodb", _DYNAMODB_ERROR + "TransactionInProgressException")


class FaultInjector:
    """The plan, the counters, and the middleware that applies the plan (thread-safe)."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = FaultPlan()
        self._random = random.Random()  # noqa: S311 - chaos, not cryptography
        self._requests: Counter[str] = Counter()
        self._injected: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self._exempt = 0
        self._transactions = IdempotentTransactions()
        if plan is not None:
            self.configure(plan)

    @property
    def plan(self) -> FaultPlan:
        with self._lock:
            return self._plan

    def configure(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            if plan.seed is not None:
                self._random.seed(plan.seed)

    def snapshot(self) -> dict[str, Any]:
        """The plan and every counter since start (counters are never reset: compare two
        snapshots for a span of time)."""
        with self._lock:
            return {
                "plan": self._plan.document(),
                "requests": dict(sorted(self._requests.items())),
                "injected": {
                    kind: dict(sorted(counts.items())) for kind, counts in self._injected.items()
                },
                "exempt": self._exempt,
            }

    def _decide(self, environ: Mapping[str, Any]) -> _Fault | None:
        """The fault to inject into this request, or None (counted either way)."""
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        service = next(
            (name for prefix, name in _TARGETS.items() if target.startswith(prefix)), None
        )
        if service is None:
            return None
        label = f"{service}.{target.partition('.')[2]}"
        with self._lock:
            if _EXEMPT_MARKER in str(environ.get("HTTP_USER_AGENT", "")):
                self._exempt += 1
                return None
            self._requests[label] += 1
            plan = self._plan
            if service not in plan.services or self._random.random() >= plan.rate:
                return None
            kind = self._random.choice(plan.kinds)
            self._injected[kind][label] += 1
            if kind == THROTTLE:
                return _Fault(kind, service, self._random.choice(_THROTTLE_CODES[service]))
            return _Fault(kind, service, _ERROR_CODES[service])

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` behind the plan (for ``EmbeddedAws(..., wrap=injector.wrap)``)."""

        idempotent = self._transactions.wrap(app)

        def faulty(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            fault = self._decide(environ)
            if fault is None:
                return idempotent(environ, start_response)
            if fault.kind == THROTTLE:
                return _aws_error(start_response, fault, 400, "Rate exceeded")
            if fault.kind == ERROR:
                return _aws_error(start_response, fault, 500, "Internal server error")
            return _apply_then_drop(idempotent, environ)

        return faulty


class IdempotentTransactions:
    """DynamoDB's ClientRequestToken for TransactWriteItems, which moto ignores.

    A successful transaction's answer is kept for ten minutes: the same token with the same
    request gets it again and nothing runs twice; with another request, the service's
    IdempotentParameterMismatchException. While a token's first request is still running, the
    same token gets TransactionInProgressException (the reservation and the check are one step
    under the lock, so two identical requests can never both run). Failed attempts are not kept:
    DynamoDB runs those again."""

    def __init__(self, window_seconds: float = IDEMPOTENCY_WINDOW_SECONDS) -> None:
        self._window = window_seconds
        self._lock = threading.Lock()
        self._answers: dict[str, _KeptAnswer] = {}
        self._running: set[str] = set()

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def idempotent(
            environ: dict[str, Any], start_response: Callable[..., Any]
        ) -> Iterable[bytes]:
            if environ.get("HTTP_X_AMZ_TARGET") != _TRANSACT_WRITE:
                return app(environ, start_response)
            body = _read_body(environ)
            token = _client_request_token(body)
            if token is None:
                return app(environ, start_response)
            digest = hashlib.sha256(body).hexdigest()
            outcome = self._reserve(token, digest)
            if isinstance(outcome, _Fault):
                return _aws_error(start_response, outcome, 400, "Idempotent request")
            if outcome is not None:
                start_response(outcome.status, outcome.headers)
                return [outcome.body]
            try:
                return [self._run(app, environ, start_response, token, digest)]
            finally:
                with self._lock:
                    self._running.discard(token)

        return idempotent

    def _reserve(self, token: str, digest: str) -> _KeptAnswer | _Fault | None:
        """Check and reserve ``token`` in one step: the answer kept for it, a refusal, or None
        when this request is to run it (reserved until it ends)."""
        now = time.monotonic()
        with self._lock:
            self._answers = {k: v for k, v in self._answers.items() if v.until > now}
            kept = self._answers.get(token)
            if kept is not None:
                return kept if kept.digest == digest else _MISMATCH
            if token in self._running:
                return _IN_PROGRESS
            self._running.add(token)
            return None

    def _run(
        self,
        app: WsgiApp,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        token: str,
        digest: str,
    ) -> bytes:
        seen: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append((status, list(headers)))
            return start_response(status, headers, exc_info)

        body = b"".join(app(environ, keep))
        if seen and seen[-1][0].startswith("200"):
            status, headers = seen[-1]
            answer = _KeptAnswer(digest, time.monotonic() + self._window, status, headers, body)
            with self._lock:
                self._answers[token] = answer
        return body


@dataclass(frozen=True, slots=True)
class _KeptAnswer:
    digest: str  # of the request
    until: float  # monotonic
    status: str
    headers: list[tuple[str, str]]
    body: bytes


def _client_request_token(body: bytes) -> str | None:
    try:
        token = json.loads(body).get("ClientRequestToken")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) else None


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back so the application can read it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _aws_error(
    start_response: Callable[..., Any], fault: _Fault, status: int, message: str
) -> list[bytes]:
    """An error in the JSON protocols' shape (``__type`` and ``message``)."""
    body = json.dumps({"__type": fault.code, "message": message}).encode()
    version = "1.0" if fault.service == "dynamodb" else "1.1"
    reason = "Bad Request" if status == 400 else "Internal Server Error"
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", f"application/x-amz-json-{version}"),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [body]


def _apply_then_drop(app: WsgiApp, environ: dict[str, Any]) -> NoReturn:
    """Run the request to completion (it is applied), then close the connection unanswered.

    Raises ConnectionAbortedError, which werkzeug's server takes for a client that went away:
    it sends nothing more and logs nothing."""

    def discard(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    for _chunk in app(environ, discard):
        pass
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("fault injected: the response was dropped")


# --- across the process boundary -----------------------------------------------------------------


class FaultControl(Protocol):
    """What ``/_dev/faults`` drives: a ``FaultInjector`` or the stack's ``EndpointFaults``."""

    def configure(self, plan: FaultPlan) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class FaultControlError(Exception):
    """The endpoint's process did not answer a control message (it is gone or stuck)."""


@dataclass(frozen=True, slots=True)
class InjectorWrap:
    """The ``wrap`` for the endpoint's process (it pickles): a ``FaultInjector`` around the
    application (and around ``inner``, another wrap, when given), controlled over ``control``."""

    control: Connection
    inner: Callable[[WsgiApp], WsgiApp] | None = None

    def __call__(self, app: WsgiApp) -> WsgiApp:
        if self.inner is not None:
            app = self.inner(app)
        injector = FaultInjector()
        threading.Thread(
            target=_serve_control, args=(injector, self.control), name="faults", daemon=True
        ).start()
        return injector.wrap(app)


def _serve_control(injector: FaultInjector, control: Connection) -> None:
    """In the endpoint's process: answer each control message until the stack closes the pipe.
    A message is ``{"plan": <plan document> | null}``; the answer is the snapshot."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            message = json.loads(control.recv_bytes())
            if message.get("plan") is not None:
                injector.configure(FaultPlan.from_document(message["plan"]))
            control.send_bytes(json.dumps(injector.snapshot()).encode())


class EndpointFaults:
    """The stack's handle on the injector in the endpoint's process: pass ``wrap`` to
    ``AwsProcess``, call ``started`` once it runs, then ``configure`` and ``snapshot`` as on a
    ``FaultInjector`` (one control message at a time)."""

    def __init__(self, inner: Callable[[WsgiApp], WsgiApp] | None = None) -> None:
        ours, theirs = _SPAWN.Pipe()
        self._channel: Connection | None = ours
        self._theirs: Connection | None = theirs
        self.wrap = InjectorWrap(theirs, inner)
        self._lock = threading.Lock()

    def started(self) -> None:
        """The endpoint's process holds its end now: close ours of it, so that its end of the
        pipe reads EOF when the stack's goes away."""
        if self._theirs is not None:
            self._theirs.close()
            self._theirs = None

    def configure(self, plan: FaultPlan) -> None:
        self._call(plan)

    def snapshot(self) -> dict[str, Any]:
        return self._call(None)

    def close(self) -> None:
        self.started()
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def _call(self, plan: FaultPlan | None) -> dict[str, Any]:
        message = json.dumps({"plan": None if plan is None else plan.document()}).encode()
        with self._lock:
            channel = self._channel
            if channel is None:
                raise FaultControlError("the fault injector is not running")
            try:
                channel.send_bytes(message)
                if not channel.poll(CONTROL_TIMEOUT_SECONDS):
                    raise TimeoutError
                answer: dict[str, Any] = json.loads(channel.recv_bytes())
            except (OSError, EOFError, TimeoutError) as exc:
                # An answer may still come: it would be taken for the next message's.
                channel.close()
                self._channel = None
                raise FaultControlError("the fault injector did not answer") from exc
            return answer


# --- control over HTTP ---------------------------------------------------------------------------


def control_enabled(env: Mapping[str, str]) -> bool:
    return env.get(ENABLE_VARIABLE, "1").strip().lower() not in ("0", "false", "no")


def plan_from_environment(env: Mapping[str, str]) -> FaultPlan | None:
    """The plan ``DEV_FAULTS`` names, or None; ValueError names the variable, not its value."""
    text = (env.get(PLAN_VARIABLE) or "").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{PLAN_VARIABLE}: the value is not JSON") from exc
    try:
        return FaultPlan.from_document(document)
    except ValueError as exc:
        raise ValueError(f"{PLAN_VARIABLE}: {exc}") from exc


def fault_control(injector: FaultControl) -> Callable[[HttpRequest], HttpResponse | None]:
    """The ``/_dev/faults`` handler (None for every other path: the API's)."""

    def handle(request: HttpRequest) -> HttpResponse | None:
        if request.raw_path != FAULTS_PATH:
            return None
        if request.method == "POST":
            if _content_type(request) != "application/json":
                return _answer(415, {"error": "invalid_request", "error_description": JSON_ONLY})
            try:
                injector.configure(FaultPlan.from_document(json.loads(request.body or b"{}")))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                message = (
                    "the body is not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
                )
                return _answer(400, {"error": "invalid_request", "error_description": message})
            except FaultControlError:
                return _unavailable()
        elif request.method != "GET":
            return _answer(405, {"error": "method_not_allowed"})
        try:
            return _answer(200, injector.snapshot())
        except FaultControlError:
            return _unavailable()

    return handle


def _content_type(request: HttpRequest) -> str:
    for name, value in request.headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _unavailable() -> HttpResponse:
    response = _answer(503, {"error": "unavailable"})
    response.headers.append(("Retry-After", "1"))
    return response


def _answer(status: int, document: dict[str, Any]) -> HttpResponse:
    from devserver.gateway import HttpResponse

    return HttpResponse(status, list(_JSON), json.dumps(document).encode())
