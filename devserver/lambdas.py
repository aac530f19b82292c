"""The template's functions as Lambda runs them: a pool of containers per function.

Each function (logical id from template.yaml) gets a ``FunctionPool`` of containers: separate
processes, one per Lambda execution environment (devserver.container is their whole life),
each importing the function's module itself (its own cold start and module state) and serving
one invocation at a time. A pool starts with one warm container; a request that finds every
container busy starts one more, up to DEV_FUNCTION_CONCURRENCY (default 4), and takes whichever
container is free first. No lock is held during an invocation: concurrent requests run in as
many containers at once, so the races a deployed stack has, the local stack has too.
``/_dev/containers`` (``containers_page``) lists them.

What API Gateway answers when the function cannot:

* Beyond the pool's size a request waits for a free container. The wait counts against API
  Gateway's integration timeout (30 s, HTTP API's default and maximum): a request that gets no
  container within it is answered as an integration that timed out, 503
  ``{"message":"Service Unavailable"}``. (Lambda itself would have started another container;
  the wait stands in for that, the bound keeps it from being endless.)
* A container that dies (a crash, a kill, ``sys.exit`` in the handler) is dropped, and the next
  request that needs one starts a new one. The invocation it was serving gets API Gateway's
  answer for a failed Lambda integration, 500 ``{"message":"Internal Server Error"}``; an idle
  container that died never saw an event, and the event goes to another container.
* A handler's exception is the invocation's error (Lambda's shape: ``errorMessage``,
  ``errorType``, ``stackTrace``), raised here as ``FunctionError``; the gateway answers 500.

The function Timeout is not enforced (a shared, slow machine must not fail requests);
containers are never reclaimed for idleness. Containers end with the stack: each holds the
read end of a pipe (its lifeline) whose write end only the stack holds, so a stop, or the
stack's death by any signal, ends every container at once (devserver.container).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import signal
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from devserver.clock import SharedOffset
from devserver.container import PRELOAD, ContainerConfig, run
from devserver.gateway import FunctionError, HttpRequest, HttpResponse, IntegrationError
from devserver.settings import DevError
from devserver.stack import FunctionSpec

# HTTP API's integration timeout (its default and maximum): how long a request may wait for a
# free container before API Gateway answers 503.
INTEGRATION_TIMEOUT_SECONDS: Final = 30.0
# A cold start on a busy machine takes seconds; one that never finishes fails the start.
READY_TIMEOUT_SECONDS: Final = 120.0
STOP_TIMEOUT_SECONDS: Final = 5.0
EXIT_STATUS_SECONDS: Final = 1.0
# An idle container answers a describe at once; one that does not (stopped with SIGSTOP, say)
# is ended rather than let /_dev/containers hang.
DESCRIBE_TIMEOUT_SECONDS: Final = 10.0
CONTAINERS_PATH: Final = "/_dev/containers"
_DESCRIBE: Final = json.dumps({"describe": True}).encode()

# Containers are forked from multiprocessing's fork server (one per process: this setting is
# global), which has imported devserver.container's PRELOAD. Its own process, started by
# start_fork_server or the first container; it ends when this process does.
_FORKS: Final = multiprocessing.get_context("forkserver")
# "__main__": a program that runs a stack in-process (pytest) is imported by the fork server
# once instead of again in every container (a module run with -m never is).
_FORKS.set_forkserver_preload(["__main__", "devserver.container", *PRELOAD])


def start_fork_server() -> None:
    """Start the fork server now (it imports ``PRELOAD`` meanwhile) instead of at the first
    container; the environment it inherits is the one at this call."""
    multiprocessing.forkserver.ensure_running()


class ContainerGone(Exception):
    """The container's process has ended (or stopped answering); ``delivered``: it had
    received the message."""

    def __init__(self, delivered: bool) -> None:
        super().__init__("the container is gone")
        self.delivered = delivered


class Container:
    """One container process, from the stack's side: its channel and its lifeline."""

    def __init__(
        self,
        spec: FunctionSpec,
        process: multiprocessing.process.BaseProcess,
        channel: Connection,
        lifeline: Connection,
    ) -> None:
        self.spec = spec
        self.process = process
        self._channel = channel
        self._lifeline: Connection | None = lifeline  # closing it ends the container
        self._status = threading.Lock()  # one reader of the exit status at a time
        self.broken = False  # its channel failed: never used again, whatever its process does
        self.invocations = 0
        self.init_ms: float | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    @classmethod
    def spawn(
        cls, spec: FunctionSpec, environment: dict[str, str], clock: SharedOffset
    ) -> Container:
        """Fork the container; its cold start runs on while this returns (``wait_ready``)."""
        ours, theirs = _FORKS.Pipe()
        lifeline_read, lifeline_write = _FORKS.Pipe(duplex=False)
        config = ContainerConfig(
            logical_id=spec.logical_id,
            function_name=spec.name,
            memory_mb=spec.memory_mb,
            handler=f"{spec.module}.{spec.handler}",
            environment=environment,
        )
        process = _FORKS.Process(
            target=run,
            args=(config, theirs, lifeline_read, clock),
            name=f"{spec.logical_id}-container",
            daemon=True,
        )
        try:
            process.start()
        except (OSError, EOFError) as exc:  # the fork server failed or went away
            ours.close()
            lifeline_write.close()
            raise DevError(f"{spec.logical_id}: cannot start a container ({exc})") from exc
        finally:
            theirs.close()
            lifeline_read.close()
        return cls(spec, process, ours, lifeline_write)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait for the cold start; a DevError names the function when it fails."""
        name = self.spec.logical_id
        try:
            if not self._channel.poll(timeout):
                self.stop()
                raise DevError(f"{name}: its container did not start within {timeout:.0f} s")
            hello = json.loads(self._channel.recv_bytes())
        except (EOFError, OSError):
            self.stop()
            raise DevError(
                f"{name}: its container exited while starting ({self.exit_description()})"
            ) from None
        if not hello.get("ready"):
            self.stop()
            raise DevError(f"{name}: cannot import {self.spec.module} ({hello.get('error')})")
        self.init_ms = float(hello["init_ms"])

    def alive(self) -> bool:
        with self._status:
            return self.process.is_alive()

    def exit_description(self) -> str:
        """How the process ended, for the terminal (it has, or is about to: its channel
        closed; the exit status arrives a moment later)."""
        with self._status:
            self.process.join(EXIT_STATUS_SECONDS)
            code = self.process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def call(self, message: bytes, timeout: float | None = None) -> dict[str, Any]:
        """One message and its answer (within ``timeout`` seconds if given, else the
        container is killed); the pool guarantees one caller at a time."""
        try:
            self._channel.send_bytes(message)
        except OSError as exc:
            self.broken = True
            raise ContainerGone(delivered=False) from exc
        try:
            if timeout is not None and not self._channel.poll(timeout):
                self.kill()
                raise ContainerGone(delivered=True)
            answer: dict[str, Any] = json.loads(self._channel.recv_bytes())
        except (EOFError, OSError) as exc:
            self.broken = True
            raise ContainerGone(delivered=True) from exc
        return answer

    def kill(self) -> None:
        self.broken = True
        self.end()
        self.process.kill()  # SIGKILL: ends a stopped process too

    def end(self) -> None:
        """Cut the lifeline: the process exits at once, whatever it is doing. The channel
        stays open for whoever is in ``call`` (it reads EOF), until ``dispose``."""
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def dispose(self) -> None:
        """End it and close the channel (nobody is in ``call``)."""
        self.end()
        self._channel.close()

    def join(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()

    def stop(self) -> None:
        self.dispose()
        self.join()


class FunctionPool:
    """The containers of one function: one warm at start, more on demand, up to
    ``concurrency``; each serves one invocation at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: dict[str, str],
        clock: SharedOffset,
        *,
        concurrency: int,
        wait_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        self.spec = spec
        self.concurrency = concurrency
        self._environment = environment
        self._clock = clock
        self._wait_seconds = wait_seconds
        self._changed = threading.Condition()
        self._idle: list[Container] = []  # the most recently used last: taken first
        self._busy: set[Container] = set()
        self._size = 0  # containers alive or starting: never above concurrency
        self._closed = False
        self._warming: Container | None = None
        self._ended: list[Container] = []
        self._start_failures = 0  # cold starts that failed, and the last one's reason
        self._start_failure = ""
        self.cold_starts = 0

    # --- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        """Start the first container; ``ready`` waits for its cold start, so the cold starts
        of every function run side by side with the rest of the stack's start-up."""
        with self._changed:
            self._size += 1
            self.cold_starts += 1
        try:
            self._warming = Container.spawn(self.spec, self._environment, self._clock)
        except BaseException:
            self._forget_slot()
            raise

    def ready(self) -> None:
        warming, self._warming = self._warming, None
        if warming is None:
            return
        try:
            warming.wait_ready()
        except BaseException:
            self._forget_slot()
            raise
        self._release(warming)

    def close(self) -> None:
        """End every container (one in flight too: its request gets a 500) without waiting
        (``join`` waits); from now on no container starts."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            in_use = [*self._busy, *([self._warming] if self._warming is not None else [])]
            for container in idle:
                self._drop(container)
            self._changed.notify_all()
        for container in in_use:
            container.end()  # its caller reads EOF and drops it
        self._ended = [*idle, *in_use]

    def join(self) -> None:
        for container in self._ended:
            container.join()

    # --- invocations -----------------------------------------------------------------------

    def invoke(self, event: Any) -> Any:
        """One invocation in a free container: its result, else FunctionError (the handler
        raised) or IntegrationError (API Gateway's own answer)."""
        for _attempt in range(self.concurrency + 1):
            container = self._acquire()
            message = json.dumps(
                {
                    "invoke": event,
                    "request_id": str(uuid.uuid4()),
                    "deadline_ms": int(time.time() * 1000) + self.spec.timeout_seconds * 1000,
                    "function_arn": self.spec.arn,
                }
            ).encode()
            try:
                answer = container.call(message)
            except ContainerGone as gone:
                self._release(container)
                if not gone.delivered:
                    continue  # it died idle and never saw the event: another container takes it
                raise IntegrationError(
                    500,
                    "Internal Server Error",
                    f"{self.spec.logical_id}: container {container.pid} died during an "
                    f"invocation ({container.exit_description()})",
                ) from gone
            container.invocations += 1
            self._release(container)
            if "error" in answer:
                error = answer["error"]
                raise FunctionError(
                    str(error.get("errorMessage", "")),
                    str(error.get("errorType", "")),
                    [str(line) for line in error.get("stackTrace") or []],
                )
            return answer["result"]
        raise IntegrationError(
            500, "Internal Server Error", f"{self.spec.logical_id}: no container took the event"
        )

    def _acquire(self) -> Container:
        """An idle container. When there is none, one more starts (while the pool is below its
        size) and the request takes whichever container is free first: the new one, or one
        that finishes meanwhile. Lambda would hold the request for the new container's cold
        start; taking the first free one keeps bursts quick on a small machine and changes
        nothing else (the pool still grows to what the concurrency needs)."""
        deadline = time.monotonic() + self._wait_seconds
        with self._changed:
            failures_seen = self._start_failures
            while True:
                if self._closed:
                    raise IntegrationError(503, "Service Unavailable", "the stack is stopping")
                while self._idle:
                    container = self._idle.pop()
                    if not container.broken and container.alive():
                        self._busy.add(container)
                        return container
                    self._drop(container)
                if self._start_failures != failures_seen:
                    raise IntegrationError(500, "Internal Server Error", self._start_failure)
                if self._claim_slot():
                    self._start_in_background()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IntegrationError(
                        503,
                        "Service Unavailable",
                        f"{self.spec.logical_id}: no free container within "
                        f"{self._wait_seconds:g} s (DEV_FUNCTION_CONCURRENCY={self.concurrency})",
                    )
                self._changed.wait(left)

    def _claim_slot(self) -> bool:
        """Room for one more container? Checked and claimed in one step, under the lock (held
        by the caller): two requests can never both take the last slot."""
        if self._size >= self.concurrency:
            return False
        self._size += 1
        self.cold_starts += 1
        return True

    def _start_in_background(self) -> None:
        def cold_start() -> None:
            try:
                container = Container.spawn(self.spec, self._environment, self._clock)
                container.wait_ready()
            except Exception as exc:  # noqa: BLE001 - every waiter learns it: a 500 each
                reason = str(exc)
                if not isinstance(exc, DevError):
                    reason = f"{self.spec.logical_id}: no container ({type(exc).__name__})"
                with self._changed:
                    self._size -= 1
                    self._start_failures += 1
                    self._start_failure = reason
                    self._changed.notify_all()
                return
            self._release(container)  # idle: the first waiter takes it

        threading.Thread(
            target=cold_start, name=f"cold-start-{self.spec.logical_id}", daemon=True
        ).start()

    def _release(self, container: Container) -> None:
        """Back to idle (the first waiter takes it), or dropped when it is dead or the pool
        is closed."""
        with self._changed:
            self._busy.discard(container)
            if self._closed or container.broken or not container.alive():
                self._drop(container)
            else:
                self._idle.append(container)
            self._changed.notify()

    def _drop(self, container: Container) -> None:
        """Forget a dead (or closing) container nobody is using; the lock is held."""
        self._size -= 1
        container.dispose()

    def _forget_slot(self) -> None:
        with self._changed:
            self._size -= 1
            self._changed.notify()

    # --- what /_dev/containers shows -------------------------------------------------------

    def containers(self) -> list[Container]:
        """The containers now, idle and busy, by pid."""
        with self._changed:
            return sorted([*self._idle, *self._busy], key=lambda container: container.pid)

    def describe(self) -> dict[str, Any]:
        """Every container: pid, invocations, cold start; idle ones are asked themselves (the
        clock offset their Runtime reads), busy ones are listed as the pool knows them."""
        with self._changed:
            idle, self._idle = self._idle, []
            self._busy.update(idle)
            busy = [container for container in self._busy if container not in idle]
        entries: list[dict[str, Any]] = []
        for container in idle:
            with contextlib.suppress(ContainerGone):  # died or stuck: _release drops it
                answer = container.call(_DESCRIBE, timeout=DESCRIBE_TIMEOUT_SECONDS)
                entries.append({**answer, "state": "idle"})
            self._release(container)
        entries += [
            {
                "pid": container.pid,
                "invocations": container.invocations,
                "init_ms": container.init_ms,
                "state": "busy",
            }
            for container in busy
        ]
        return {
            "function": self.spec.logical_id,
            "concurrency": self.concurrency,
            "cold_starts": self.cold_starts,
            "containers": sorted(entries, key=lambda entry: int(entry["pid"])),
        }


def containers_page(
    pools: dict[str, FunctionPool], stack_pid: int
) -> Callable[[HttpRequest], HttpResponse | None]:
    """``GET /_dev/containers``: every pool, its containers' pids and invocation counts."""

    def handle(request: HttpRequest) -> HttpResponse | None:
        if request.raw_path != CONTAINERS_PATH:
            return None
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if request.method != "GET":
            return HttpResponse(405, headers, b'{"error":"method_not_allowed"}')
        current = dict(pools)  # a pool may be added meanwhile (a function's first call)
        document = {
            "stack_pid": stack_pid,
            "functions": [current[name].describe() for name in sorted(current)],
        }
        return HttpResponse(200, headers, json.dumps(document).encode())

    return handle
