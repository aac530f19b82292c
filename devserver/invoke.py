"""``make invoke FN=<logical id> EVENT=<file>``: one function's handler, as `sam local invoke`
runs it, without Docker.

The function's environment is the template's (Globals merged with its own variables), with
samconfig.toml's dev parameter overrides and then the developer's environment winning, exactly
as `make dev` evaluates it. AWS is the running `make dev` stack when one listens on AWS_PORT,
else an embedded one started for this call (and stopped after it). ``{{placeholders}}`` in the
event are filled as `make events` fills them. The handler gets a Lambda context; its response
is printed as JSON on stdout, and everything it logs goes to stderr.

Exit status: 0 when the handler returned, 1 when it raised (Lambda's error document is
printed) or the stack could not be reached, 2 for bad usage.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devserver.settings import HOST, DevError, Ports, developer_settings, ports_from
from devserver.stack import LocalStack
from devserver.template import REPO_ROOT, TemplateError, load_template

if TYPE_CHECKING:
    from tokencore.runtime import Runtime

PROG: Final = "make invoke"
EXIT_RAISED: Final = 1
EXIT_USAGE: Final = 2


class InvokeError(Exception):
    """Why nothing was invoked; one line."""


def _listening(ports: Ports) -> bool:
    try:
        socket.create_connection((HOST, ports.aws), timeout=1).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def samconfig_environment(template: Mapping[str, Any], profile_name: str = "dev") -> dict[str, str]:
    """samconfig's parameter overrides, as the environment variables that carry them."""
    from deploy.profiles import load_samconfig, profile

    overrides = profile(load_samconfig(), profile_name).parameters
    variables = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    found: dict[str, str] = {}
    for name, expression in (variables.get("Variables") or {}).items():
        if isinstance(expression, dict) and expression.get("Ref") in overrides:
            found[name] = overrides[expression["Ref"]]
    return found


class Target:
    """The stack a call runs against, and a Runtime wired to it."""

    def __init__(self, stack: LocalStack, runtime: Runtime) -> None:
        self.stack = stack
        self.runtime = runtime


@contextlib.contextmanager
def stack_target(*, require_running: bool) -> Iterator[Target]:
    """The running local stack, else (unless ``require_running``) an embedded one."""
    from devserver.clock import DevClock, stack_offset
    from devserver.ctl import local_cli_environment

    template = load_template()
    env = {**samconfig_environment(template), **os.environ}
    ports = ports_from(env)
    try:
        if _listening(ports):
            environment = local_cli_environment(env)  # also installs it as os.environ
            stack = LocalStack(template, developer_settings(env, ports), create=False)
            clock = DevClock(stack_offset(ports.api_url))
            yield Target(stack, _runtime(environment, clock))
            return
        if require_running:
            raise InvokeError(
                f"nothing listens on {ports.endpoint_url}; start `make dev` (same AWS_PORT) first"
            )
        from devserver.server import DevStack

        env.update(PORT=str(_free_port()), AWS_PORT=str(_free_port()), DEV_FUNCTION_CONCURRENCY="1")
        print(f"{PROG}: no local stack is running; starting an embedded one", file=sys.stderr)
        embedded = DevStack(env)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                embedded.start()
            yield Target(embedded.stack, _runtime(dict(os.environ), embedded.clock))
        finally:
            embedded.stop()
    except (DevError, TemplateError) as exc:
        raise InvokeError(str(exc)) from exc


@contextlib.contextmanager
def stack_runtime(*, require_running: bool) -> Iterator[Runtime]:
    with stack_target(require_running=require_running) as target:
        yield target.runtime


def _runtime(environment: Mapping[str, str], clock: Any) -> Runtime:
    from tokencore.config import Settings, reset_settings
    from tokencore.runtime import Runtime, set_runtime

    os.environ.clear()
    os.environ.update(environment)
    reset_settings()
    runtime = Runtime(Settings.from_env(), clock)
    set_runtime(runtime)
    return runtime


def invoke(target: Target, logical_id: str, event: Any) -> tuple[bool, Any]:
    """(returned, the response or Lambda's error document) for one invocation."""
    from devserver.container import LambdaContext
    from tokencore.config import Settings, reset_settings
    from tokencore.runtime import Runtime, set_runtime

    stack = target.stack
    if logical_id not in stack.function_ids():
        known = ", ".join(stack.function_ids())
        raise InvokeError(f"no function {logical_id!r} in template.yaml (one of: {known})")
    spec = stack.function_spec(logical_id)
    os.environ.update(stack.function_environment(logical_id))
    os.environ.update(
        AWS_LAMBDA_FUNCTION_NAME=spec.name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_mb),
        _HANDLER=f"{spec.module}.{spec.handler}",
    )
    reset_settings()
    set_runtime(Runtime(Settings.from_env(), target.runtime.clock))
    context = LambdaContext(
        function_name=spec.name,
        function_version="$LATEST",
        invoked_function_arn=spec.arn,
        memory_limit_in_mb=spec.memory_mb,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{spec.name}",
        log_stream_name=time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        deadline_ms=int(time.time() * 1000) + spec.timeout_seconds * 1000,
    )
    with contextlib.redirect_stdout(sys.stderr):  # the logs; stdout is the response alone
        module = importlib.import_module(spec.module)
        handler = getattr(module, spec.handler)
        try:
            return True, handler(event, context)
        except Exception as exc:  # noqa: BLE001 - the invocation's error, as Lambda reports it
            return False, {"errorMessage": str(exc), "errorType": type(exc).__name__}


def load_event(target: Target, path: Path) -> Any:
    from devserver.events import EVENTS_DIR, PLACEHOLDER, log_in, render_text, values_for

    text = path.read_text(encoding="utf-8")
    if PLACEHOLDER.search(text):
        try:
            relative = str(path.resolve().relative_to(EVENTS_DIR))
        except ValueError:
            relative = path.name
        text = render_text(text, values_for(relative, log_in(target.runtime)))
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: {PROG} FN=<logical id> EVENT=<file>", file=sys.stderr)
        return EXIT_USAGE
    logical_id, event_file = args
    path = Path(event_file)
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).exists() else REPO_ROOT / path
    if not path.is_file():
        print(f"{PROG}: no event file {event_file}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with stack_target(require_running=False) as target:
            event = load_event(target, path)
            returned, response = invoke(target, logical_id, event)
    except InvokeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_RAISED
    json.dump(response, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0 if returned else EXIT_RAISED


if __name__ == "__main__":
    sys.exit(main())
