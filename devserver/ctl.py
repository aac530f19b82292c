"""``python -m devserver.ctl ARGS`` (what `make ctl ARGS="..."` runs): tokenctl against the
running local stack.

It builds the environment exactly as `make dev` does (devserver.settings: the endpoint on
AWS_PORT, fake credentials, the template's settings with the developer's values winning), so
the CLI finds the same table, secrets and parameter; it creates nothing. For real AWS run
``tokenctl`` itself (``.venv/bin/tokenctl``) with AWS_ENDPOINT_URL unset and the deployment's
settings in the environment.

Exit codes are tokenctl's (0; 1 failed; 2 bad usage; 130 interrupted). A local stack that is
not running is a failure like any other: ``tokenctl: local_stack_error: ...``, exit 1. `make
ctl` exits 2 whenever this exits non-zero (GNU make's rule for a failed recipe), after a line
naming this module's code; ``.venv/bin/python -m devserver.ctl ARGS`` returns the code itself.
"""

from __future__ import annotations

import os
import socket
import sys

from devserver.clock import DevClock, stack_offset
from devserver.settings import (
    HOST,
    LOCAL_DEFAULTS,
    DevError,
    Ports,
    aws_environment,
    developer_settings,
    ports_from,
    scrubbed,
)
from devserver.stack import LocalStack
from devserver.template import TemplateError, load_template


def _reachable(ports: Ports) -> None:
    try:
        socket.create_connection((HOST, ports.aws), timeout=2).close()
    except OSError:
        raise DevError(
            f"nothing listens on {ports.endpoint_url}; is `make dev` running (with the same "
            "AWS_PORT)?"
        ) from None


def local_cli_environment(env: dict[str, str]) -> dict[str, str]:
    ports = ports_from(env)
    _reachable(ports)
    environment = scrubbed(env)
    environment.update(aws_environment(ports))
    for name, value in LOCAL_DEFAULTS.items():
        environment.setdefault(name, value)
    os.environ.clear()
    os.environ.update(environment)
    stack = LocalStack(load_template(), developer_settings(env, ports), create=False)
    try:
        environment.update(stack.settings_environment())
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):
            raise DevError(
                f"cannot reach the local stack at {ports.endpoint_url} ({type(exc).__name__}); "
                "is `make dev` running (with the same AWS_PORT)?"
            ) from None
        raise
    return environment


# Commands that never call AWS: they run even when the local stack is not up (and so does
# any command's --help).
OFFLINE = frozenset({"decode", "-h", "--help"})
HELP = frozenset({"-h", "--help"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in OFFLINE or HELP.intersection(args[:2]):
        from tokencore.cli import main as offline_main

        return offline_main(args)
    try:
        environment = local_cli_environment(dict(os.environ))
    except DevError as exc:
        print(f"tokenctl: local_stack_error: {exc}", file=sys.stderr)
        return 1
    except TemplateError as exc:
        print(f"tokenctl: template_error: {exc}", file=sys.stderr)
        return 1
    os.environ.clear()
    os.environ.update(environment)
    from tokencore.cli import main as cli_main

    # The stack's clock, if tests moved it (devserver.clock): rotation stamps must agree.
    offset = stack_offset(ports_from(environment).api_url)
    return cli_main(args, clock=DevClock(offset))


if __name__ == "__main__":
    sys.exit(main())
