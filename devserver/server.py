"""``python -m devserver`` (what `make dev` runs): the whole API on 127.0.0.1 without Docker or
an AWS account, built from template.yaml.

Start: bind both ports (a busy one is a one-line error naming it), start the embedded AWS
endpoint (devserver.awsendpoint: moto's server with DynamoDB's write semantics, behind the
fault injector of devserver.faults, at rate 0 until asked), put its
endpoint and fake credentials in the environment (boto3 reads AWS_ENDPOINT_URL itself, so the
functions' code is unchanged), start one warm container per routed function (their cold
starts run meanwhile), create what the template declares (the table, the key secrets and
their keys via the template's own KeySetup custom resource, the public JWKS parameter, the KMS
key in KMS mode), seed the users, wait for the warm containers, then serve. SIGINT and SIGTERM
stop the servers and every container and exit 0.

Functions run as Lambda runs them (devserver.lambdas): a pool of container processes per
function, each with its own module state and its own ``tokencore.runtime.Runtime`` (one set of
Settings: the template gives all functions the same environment), kept for the life of the
stack like warm Lambda containers. A key rotation or revocation (``make ctl
ARGS=rotate-keys``, ``revoke-key``) therefore reaches them exactly as it reaches deployed warm
containers: signers and key caches follow within JWKS_CACHE_TTL_SECONDS
(``tokencore.runtime``). To see it sooner, start the stack with a smaller
JWKS_CACHE_TTL_SECONDS. Every container reads the stack's clock (devserver.clock).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Final

from devserver import faults
from devserver.awsendpoint import WsgiApp
from devserver.awsprocess import AwsPortInUse, AwsProcess
from devserver.clock import DevClock, SharedOffset, clock_control, control_enabled
from devserver.gateway import ApiRequestHandler, ApiServer, Gateway, HttpRequest, HttpResponse
from devserver.lambdas import FunctionPool, containers_page, start_fork_server
from devserver.seed import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SeedUser,
    create_users,
    parse_seed_users,
    with_demo,
)
from devserver.settings import (
    HOST,
    LOCAL_DEFAULTS,
    DevError,
    Ports,
    aws_environment,
    developer_settings,
    function_concurrency,
    ports_from,
    scrubbed,
)
from devserver.stack import ApiSpec, LocalStack
from devserver.static import static_response
from devserver.template import TemplateError, load_template

EXIT_FAILED: Final = 1


class _Stop(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("usage: python -m devserver  (settings come from the environment)", file=sys.stderr)
        return 2
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, _on_signal)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log
    stack: DevStack | None = None
    try:
        stack = DevStack(dict(os.environ))
        stack.start()
        print(stack.banner(), flush=True)
        stack.serve()  # after the banner: whoever gets an answer has seen it printed
        threading.Event().wait()  # until a signal raises _Stop
    except _Stop:
        pass
    except (DevError, TemplateError) as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for name in (signal.SIGINT, signal.SIGTERM):
            signal.signal(name, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
    print("devserver: stopped", file=sys.stderr, flush=True)
    return 0


class DevStack:
    """The local stack, from ``env`` (the developer's environment).

    ``aws_wrap`` wraps the embedded AWS endpoint's WSGI application, inside the stack's fault
    injector (``faults``: devserver.faults). Both run in the endpoint's own process
    (devserver.awsprocess), so a wrap must pickle: a module-level function or class, or a
    ``functools.partial`` of one.
    """

    def __init__(
        self, env: Mapping[str, str], *, aws_wrap: Callable[[WsgiApp], WsgiApp] | None = None
    ) -> None:
        self._env = dict(env)
        self.ports: Ports = ports_from(env)
        self.concurrency = function_concurrency(env)
        # The injector lives in the endpoint's process, at rate 0 until asked.
        self.faults = faults.EndpointFaults(inner=aws_wrap)
        self._api_server: ApiServer | None = None
        self._aws: AwsProcess | None = None
        self._serving: threading.Thread | None = None
        self._shared_offset: SharedOffset | None = None
        self._function_environment: dict[str, str] = {}
        self.pools: dict[str, FunctionPool] = {}
        self._pools_lock = threading.Lock()
        self.api: ApiSpec | None = None
        self.users: list[tuple[SeedUser, str]] = []

    # --- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        self._api_server = _bind_api(self.ports.http)
        _probe(self.ports.aws, "AWS_PORT")  # a clean message before werkzeug prints its own
        try:  # DEV_FAULTS applies once the stack is provisioned, which is never faulted
            fault_plan = faults.plan_from_environment(self._env)
        except ValueError as exc:
            raise DevError(str(exc)) from exc
        environment = scrubbed(self._env)
        environment.update(aws_environment(self.ports))
        for name, value in LOCAL_DEFAULTS.items():
            environment.setdefault(name, value)
        _replace_environ(environment)
        start_fork_server()  # it imports the functions' libraries while the stack starts
        self._aws = _start_aws(self.ports.aws, self.faults.wrap)
        self.faults.started()

        template = load_template()
        stack = LocalStack(
            template,
            developer_settings(self._env, self.ports),
            create=True,
            invoke_custom=self._invoke,
        )
        # The functions' environment first (it may name resources, which creates them), so
        # that a custom resource's function runs with the same environment as the others.
        os.environ.update(stack.settings_environment())
        self.stack = stack

        from tokencore.config import Settings, reset_settings
        from tokencore.errors import ConfigError
        from tokencore.runtime import Runtime, set_runtime

        reset_settings()
        try:  # before creating anything: a bad setting is a one-line error, at once
            settings = Settings.from_env()
        except ConfigError as exc:
            raise DevError(exc.message) from exc
        seeds = with_demo(parse_seed_users(self._env.get("SEED_USERS", "")))
        self._shared_offset = SharedOffset.create()
        self.clock = DevClock(shared=self._shared_offset)
        self._function_environment = dict(os.environ)

        # One warm container per function the API calls, started from another thread: their
        # cold starts run while the template's resources are created and the users seeded.
        self.api = stack.api()
        wanted = {route.function for route in self.api.routes}
        wanted |= {authorizer.function for authorizer in self.api.authorizers.values()}
        warm = [self._pool(logical_id) for logical_id in sorted(wanted)]

        def start_warm() -> None:
            for pool in warm:
                pool.start()

        warming = _Background(start_warm)

        stack.provision()
        runtime = Runtime(settings, self.clock)  # the stack's own, for seeding users
        set_runtime(runtime)
        self.settings = settings
        self.users = [(seed, user.user_id) for seed, user in create_users(runtime.users, seeds)]
        warming.result()
        for pool in warm:
            pool.ready()

        self._api_server.gateway = Gateway(self.api, self._invoke)
        # The browser demo at /demo (same origin), the containers page, and the clock control
        # when asked for.
        pages: list[Callable[[HttpRequest], HttpResponse | None]] = [
            containers_page(self.pools, os.getpid()),
            static_response,
        ]
        if control_enabled(self._env):
            pages.insert(0, clock_control(self.clock))
        if faults.control_enabled(self._env):
            pages.insert(0, faults.fault_control(self.faults))
        if fault_plan is not None:
            try:
                self.faults.configure(fault_plan)
            except faults.FaultControlError as exc:
                raise DevError(str(exc)) from exc
        self._api_server.pages = _first_answer(pages)

    def serve(self) -> None:
        """Answer requests (the socket has been listening since start: early ones queue)."""
        server = self._api_server
        if server is None:
            raise DevError("the stack is not started")
        self._serving = threading.Thread(target=server.serve_forever, name="api", daemon=True)
        self._serving.start()

    def stop(self) -> None:
        if self._api_server is not None:
            if self._serving is not None:
                self._api_server.shutdown()
                self._serving.join(timeout=5)
            self._api_server.server_close()
        with self._pools_lock:
            pools = list(self.pools.values())
        for pool in pools:  # every container ends at once, then each is waited for
            pool.close()
        for pool in pools:
            pool.join()
        if self._aws is not None:
            self._aws.stop()
        self.faults.close()
        if self._shared_offset is not None:
            self._shared_offset.close()

    # --- functions ---------------------------------------------------------------------------

    def _pool(self, logical_id: str) -> FunctionPool:
        with self._pools_lock:
            pool = self.pools.get(logical_id)
            if pool is None:
                if self._shared_offset is None:
                    raise DevError("the stack is not started")
                pool = self.pools[logical_id] = FunctionPool(
                    self.stack.function_spec(logical_id),
                    self._function_environment,
                    self._shared_offset,
                    concurrency=self.concurrency,
                )
            return pool

    def _invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        return self._pool(logical_id).invoke(event)

    # --- what to tell the developer ------------------------------------------------------------

    def banner(self) -> str:
        api = self.ports.api_url
        settings = self.settings
        keys = (
            f"{settings.access_token_alg} access key in KMS"
            if settings.key_backend == "kms"
            else f"{settings.access_token_alg} access key set in Secrets Manager"
        )
        lines = [
            "",
            "tokencore local stack: template.yaml on moto, no Docker, no AWS account",
            "",
            f"  API            {api}",
            f"  browser demo   {api}/demo  (web/tokencore.js, the reference client)",
            f"  AWS endpoint   {self.ports.endpoint_url}  (moto)",
            f"  containers     {api}/_dev/containers  (up to {self.concurrency} per function)",
            f"  discovery      {api}/.well-known/openid-configuration",
            f"  keys           {keys}; refresh HMAC key set in Secrets Manager",
            f"  table          {settings.sessions_table_name}",
        ]
        for position, (seed, _user_id) in enumerate(self.users):
            label = "users" if position == 0 else ""
            roles = ",".join(seed.roles) or "no roles"
            shown = (
                f"{seed.username} / {seed.password}"
                if seed.username == DEMO_USERNAME and seed.password == DEMO_PASSWORD
                else seed.username
            )
            lines.append(f"  {label:<14} {shown}  ({roles})")
        lines += ["", "  routes (template.yaml):"]
        for route in self.api.routes if self.api is not None else ():
            guard = "authorizer" if route.authorizer else "public"
            lines.append(f"    {route.route_key:<38} {route.function}  [{guard}]")
        lines += [
            "",
            '  operator CLI   make ctl ARGS="list-sessions demo"   (make ctl ARGS=--help)',
            "",
        ]
        lines += walkthrough(
            self.ports, settings, self.users, clock_control=control_enabled(self._env)
        )
        lines += ["", "Ctrl-C stops the stack (everything is in memory and goes with it).", ""]
        return "\n".join(lines)


def walkthrough(
    ports: Ports, settings: Any, users: list[tuple[SeedUser, str]], *, clock_control: bool = True
) -> list[str]:
    """The curl session printed at start; it runs as printed (bash, curl 7.79+), except that
    with a grace window and DEV_CLOCK_CONTROL=0 step 4 asks the reader to wait."""
    demo = next((seed for seed, _ in users if seed.username == DEMO_USERNAME), None)
    if demo is None:
        return ["(no demo user: SEED_USERS names its own demo)"]
    credentials = shlex.quote(
        json.dumps({"username": demo.username, "password": demo.password}, separators=(",", ":"))
    )
    login = (
        f"curl -s -c jar -b jar -H 'Content-Type: application/json' -d {credentials} "
        "$API/auth/login"
    )
    token = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    show = "curl -s -w ' %{http_code}\\n'"  # the body, then the status
    xrw = "-H 'X-Requested-With: curl'"  # what a cross-site form cannot send
    lines = [
        "Try it (curl 7.79+ sends the Secure refresh cookie to 127.0.0.1 over http; the jar",
        "file keeps the cookies between calls):",
        "",
        f"  API={ports.api_url}",
        "  # 1. log in: the access token in the body; refresh token and fingerprint in cookies",
        f"  TOKEN=$({login} | {token})",
        "  # 2. a protected route: the bearer token plus the fingerprint cookie it is bound to",
        f'  {show} -b jar -H "Authorization: Bearer $TOKEN" $API/me',
    ]
    if not settings.refresh_cookie_in_use:
        lines += [
            "  # REFRESH_TOKEN_TRANSPORT=body: the refresh token is in the login response body;",
            '  # send it as {"refresh_token": "..."} to /auth/refresh and /auth/logout',
        ]
        return lines
    grace = settings.refresh_reuse_grace_seconds
    lines += [
        "  # 3. refresh: the refresh cookie is rotated (keep the old jar to replay it);",
        "  #    X-Requested-With (or a JSON body) is what a cross-site form cannot send",
        "  cp jar jar.old",
        f"  {show} -c jar -b jar {xrw} -X POST $API/auth/refresh",
    ]
    if grace > 0 and clock_control:
        lines += [
            f"  # 4. reuse detection: after the {grace} s grace window (the stack's clock"
            " moves past",
            "  #    it), replaying the old refresh token revokes the whole session: 401 for it,",
            "  #    then 401 for the new one",
            "  curl -s -o /dev/null -H 'Content-Type: application/json' "
            f"-d '{{\"advance_seconds\": {grace + 1}}}' $API/_dev/clock",
        ]
    elif grace > 0:  # DEV_CLOCK_CONTROL=0: the reader waits, the script cannot move time
        lines += [
            f"  # 4. reuse detection: wait {grace + 1} s (past the {grace} s grace window)"
            " before the",
            "  #    next two lines; then replaying the old refresh token revokes the whole",
            "  #    session: 401 for it, then 401 for the new one",
        ]
    else:
        lines += [
            "  # 4. reuse detection: replaying the old refresh token revokes the whole session:",
            "  #    401 for it, then 401 for the new one",
        ]
    lines += [
        f"  {show} -b jar.old {xrw} -X POST $API/auth/refresh",
        f"  {show} -b jar {xrw} -X POST $API/auth/refresh",
        "  # 5. log in again, then log out: 204 and both cookies cleared",
        f"  {login.replace('curl -s', show, 1)}",
        f"  curl -s -i -c jar -b jar {xrw} -X POST $API/auth/logout",
    ]
    return lines


# --- servers ----------------------------------------------------------------------------------


def _first_answer(
    handlers: list[Callable[[HttpRequest], HttpResponse | None]],
) -> Callable[[HttpRequest], HttpResponse | None]:
    def answer(request: HttpRequest) -> HttpResponse | None:
        for handler in handlers:
            response = handler(request)
            if response is not None:
                return response
        return None

    return answer


def _in_use(port: int, variable: str) -> DevError:
    return DevError(
        f"port {port} ({variable}) is already in use; stop whatever listens there or choose "
        f"another, e.g. {variable}={port + 1} make dev"
    )


def _bind_api(port: int) -> ApiServer:
    try:
        return ApiServer((HOST, port), ApiRequestHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _in_use(port, "PORT") from None
        raise DevError(f"cannot listen on {HOST}:{port} (PORT): {exc.strerror}") from None


class _Background:
    """One call in a thread; ``result`` waits for it and re-raises what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self._call = call
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="background", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _start_aws(port: int, wrap: Callable[[WsgiApp], WsgiApp] | None) -> AwsProcess:
    aws = AwsProcess(HOST, port, wrap=wrap)
    try:
        aws.wait_ready()
    except AwsPortInUse:  # taken since the probe; werkzeug has printed its own lines
        aws.stop()
        raise _in_use(port, "AWS_PORT") from None
    except RuntimeError as exc:
        aws.stop()
        raise DevError(str(exc)) from exc
    return aws


def _probe(port: int, variable: str) -> None:
    """Bind and release ``port`` the way the servers will (SO_REUSEADDR, as http.server and
    werkzeug do), so a port in use is reported by name."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(port, variable) from None
            raise DevError(f"cannot listen on {HOST}:{port} ({variable}): {exc.strerror}") from None


def _replace_environ(environment: Mapping[str, str]) -> None:
    os.environ.clear()
    os.environ.update(environment)
