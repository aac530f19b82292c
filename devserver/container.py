"""One function container of the local stack: a process like a Lambda execution environment.

``run`` is the process's whole life: it takes the stack's environment (the one template.yaml
gives every function), builds its own ``tokencore.runtime.Runtime`` on the stack's clock,
imports its function's module itself (its own cold start, its own module state), then serves
one invocation at a time until the stack closes its channel. devserver.lambdas starts and
pools these; nothing else talks to them.

Containers are forked from multiprocessing's fork server, which has imported what every
function uses (``PRELOAD``: boto3, Powertools, cryptography, the tokencore layer, whose modules
hold no state until a Runtime is built) and parsed the AWS clients' service models
(devserver.prime), as Lambda SnapStart restores a primed snapshot instead of starting from
nothing. The function's module is imported in the container, after the fork, and the Runtime
is built there: what a container holds is its own. (bench/coldstart.py measures a real cold
start, every import included.)

What it is given:

* channel: a ``multiprocessing`` connection carrying JSON. First ``{"ready": true}`` (or
  ``{"ready": false, "error": ...}`` when the cold start fails), then per invocation
  ``{"invoke": event, "request_id", "deadline_ms", "function_arn"}`` answered by ``{"result":
  ...}`` or ``{"error": {...}}`` in Lambda's error shape (``errorMessage``, ``errorType``,
  ``stackTrace``). ``{"describe": true}`` is answered by what ``/_dev/containers`` shows.
  Events and results cross as JSON, as in Lambda: a result JSON cannot carry is an error.
* lifeline: the read end of a pipe whose only write end the stack holds. It reads EOF when
  the stack closes it or dies in any way (SIGKILL included), and the container exits at once,
  even in the middle of an invocation: no container outlives its stack.
* clock: the stack's clock offset page (devserver.clock.SharedOffset), mapped read-only.

SIGINT is ignored (a Ctrl-C in the terminal reaches the whole process group; the stack stops
its containers itself).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from devserver.clock import DevClock, SharedOffset

# Imported once by the fork server, before any container is forked from it: the libraries, the
# layer (its modules hold no state until a Runtime is built), and the AWS clients' parsed
# service models (devserver.prime). Never a function's module.
PRELOAD: Final = (
    "boto3",
    "botocore.client",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_xray_sdk.core",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "argon2",
    "tokencore.authz",
    "tokencore.http",
    "tokencore.keys.secretsmanager",
    "tokencore.keys.ssm",
    "tokencore.runtime",
    "tokencore.service",
    "devserver.prime",
)
Handler = Callable[[Any, Any], Any]


@dataclass(slots=True)
class LambdaContext:
    """The attributes of Lambda's context object (``aws_lambda_powertools`` reads them)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """What a container is told at its start (Lambda gives its runtime the same facts)."""

    logical_id: str
    function_name: str
    memory_mb: int
    handler: str  # module.function, as Lambda's _HANDLER
    environment: dict[str, str]


def run(
    config: ContainerConfig, channel: Connection, lifeline: Connection, clock: SharedOffset
) -> None:
    """The container's process, from its fork to its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(lifeline)
    os.environ.clear()
    os.environ.update(config.environment)
    log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
    started = time.perf_counter()
    try:
        handler = _cold_start(config.handler, DevClock(shared=clock))
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported, one line
        _send(channel, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    init_ms = (time.perf_counter() - started) * 1000
    _send(channel, {"ready": True, "init_ms": round(init_ms, 1)})
    _serve(channel, handler, config, log_stream, init_ms)


def _watch(lifeline: Connection) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                lifeline.recv_bytes()  # nothing is ever sent: only EOF matters
        os._exit(0)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _cold_start(handler_name: str, clock: DevClock) -> Handler:
    """Settings from the environment, a Runtime on the stack's clock, then the function's
    module, imported here: its module state is this container's."""
    from tokencore.config import Settings
    from tokencore.runtime import Runtime, set_runtime

    set_runtime(Runtime(Settings.from_env(), clock))
    module_name, _, attribute = handler_name.rpartition(".")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise TypeError(f"{module_name} has no {attribute}()")
    return handler  # type: ignore[no-any-return]


def _serve(
    channel: Connection, handler: Handler, config: ContainerConfig, log_stream: str, init_ms: float
) -> None:
    invocations = 0
    while True:
        try:
            message = json.loads(channel.recv_bytes())
        except (EOFError, OSError):
            return  # the stack closed the channel: this container's end
        if "invoke" in message:
            invocations += 1
            reply = _invoke(handler, config, log_stream, message)
        else:  # "describe": what /_dev/containers shows
            reply = _describe(invocations, init_ms)
        try:
            channel.send_bytes(reply)
        except OSError:
            return  # the stack is gone; the lifeline ends this process anyway


def _invoke(
    handler: Handler, config: ContainerConfig, log_stream: str, message: dict[str, Any]
) -> bytes:
    context = LambdaContext(
        function_name=config.function_name,
        function_version="$LATEST",
        invoked_function_arn=str(message["function_arn"]),
        memory_limit_in_mb=config.memory_mb,
        aws_request_id=str(message["request_id"]),
        log_group_name=f"/aws/lambda/{config.function_name}",
        log_stream_name=log_stream,
        deadline_ms=int(message["deadline_ms"]),
    )
    try:
        result = handler(message["invoke"], context)
    except Exception as exc:  # noqa: BLE001 - a handler's exception is its invocation's error
        return _error(type(exc).__name__, str(exc), traceback.format_exception(exc))
    try:
        return json.dumps({"result": result}).encode()
    except (TypeError, ValueError) as exc:  # Lambda serializes the result as JSON, or fails
        return _error("Runtime.MarshalError", f"Unable to marshal response: {exc}", [])


def _error(error_type: str, message: str, stack_trace: list[str]) -> bytes:
    """An invocation's error in Lambda's shape."""
    error = {"errorMessage": message, "errorType": error_type, "stackTrace": stack_trace}
    return json.dumps({"error": error}).encode()


def _describe(invocations: int, init_ms: float) -> bytes:
    """This container as /_dev/containers lists it; the clock offset is read through the
    Runtime the handlers use, so it shows the time they see."""
    from tokencore.runtime import get_runtime

    return json.dumps(
        {
            "pid": os.getpid(),
            "invocations": invocations,
            "init_ms": round(init_ms, 1),
            "clock_offset": getattr(get_runtime().clock, "offset", None),
        }
    ).encode()


def _send(channel: Connection, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the stack is gone; the lifeline ends this process
        channel.send_bytes(json.dumps(message).encode())
