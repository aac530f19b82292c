"""The local stack as Lambda runs it, over HTTP: a burst of connections all answered, functions
in pools of separate container processes, one clock in all of them, a container's death as
API Gateway answers it, and no process left behind when the stack is killed.

One stack for the module (``DEV_FUNCTION_CONCURRENCY=4``). Concurrency is made deterministic
with SIGSTOP instead of timing: a stopped process holds what it holds (the stack's accept
loop, a container's invocation) for as long as the test wants. Nothing sleeps; each wait has a
generous deadline that only a broken stack reaches. The last test kills the stack.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.client import Client, Response
from tests.e2e.conftest import DEMO_PASSWORD, DEMO_USER, RunningStack, launch_stack
from tests.e2e.conftest import wait_until_ready as wait_for_stack
from tests.e2e.test_flows import claims_of

pytestmark = pytest.mark.e2e

CONCURRENCY = 4
LINUX = sys.platform == "linux"
BURST = 200
DEADLINE_SECONDS = 120.0  # only a broken stack gets near it
REQUEST_TIMEOUT_SECONDS = 120.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = launch_stack(
        tmp_path_factory.mktemp("containers"),
        DEV_FUNCTION_CONCURRENCY=str(CONCURRENCY),
        SESSION_CHECK_SAMPLE_RATE="0",
        LOGIN_RATE_LIMIT="1000/300",
        LOGIN_IP_RATE_LIMIT="1000/300",
    )
    try:
        wait_for_stack(running)
        yield running
    finally:
        if running.process.poll() is None:  # the last test has not killed it: stop it
            family = descendants(running.process.pid) if LINUX else set()
            code = running.stop(signal.SIGTERM)
            assert code == 0, running.logs()[-3000:]
            assert "Traceback" not in running.logs(), running.logs()[-3000:]
            assert still_running(family) == set()


# --- helpers ------------------------------------------------------------------------------------


def containers(stack: RunningStack) -> dict[str, Any]:
    answer = stack.client().request("GET", "/_dev/containers")
    assert answer.status == 200, answer
    assert answer.header("Cache-Control") == "no-store"
    document: dict[str, Any] = answer.json()
    return document


def pool_of(stack: RunningStack, function: str) -> list[dict[str, Any]]:
    for pool in containers(stack)["functions"]:
        if pool["function"] == function:
            entries: list[dict[str, Any]] = pool["containers"]
            return entries
    raise AssertionError(f"no pool for {function}")


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These processes are stopped (SIGSTOP) inside the block."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # killed meanwhile
                os.kill(pid, signal.SIGCONT)


def first_done(futures: list[Future[Response]]) -> tuple[Response, list[Future[Response]]]:
    done, _pending = wait(futures, timeout=DEADLINE_SECONDS, return_when=FIRST_COMPLETED)
    assert done, "no request was answered"
    first = next(iter(done))
    return first.result(), [future for future in futures if future is not first]


def signed_in(stack: RunningStack) -> tuple[Client, str]:
    client = stack.client()
    login = client.login(DEMO_USER, DEMO_PASSWORD)
    assert login.status == 200, login
    return client, str(login.json()["access_token"])


def descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def still_running(pids: set[int], deadline: float = DEADLINE_SECONDS) -> set[int]:
    """Wait for every one of ``pids`` to exit (pidfds: no polling); those left at the deadline."""
    handles: dict[int, int] = {}
    for pid in pids:
        try:
            handles[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue  # already gone
    try:
        waiting = set(handles)
        while waiting:
            readable, _, _ = select.select(list(waiting), [], [], deadline)
            if not readable:
                break
            waiting -= set(readable)
        return {handles[fd] for fd in waiting}
    finally:
        for fd in handles:
            os.close(fd)


# --- (a) a burst of connections -----------------------------------------------------------------


def _connect_all(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        assert code in (0, errno.EINPROGRESS), os.strerror(code)
        sockets.append(sock)
    return sockets


def _unconnected(sockets: list[socket.socket]) -> list[socket.socket]:
    """Wait until every connection is established; those that are not by the deadline."""
    waiting = list(sockets)
    while waiting:
        _, writable, _ = select.select([], waiting, [], DEADLINE_SECONDS)
        if not writable:
            break
        for sock in writable:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            waiting.remove(sock)
    return waiting


def _read_all(sockets: list[socket.socket]) -> list[bytes]:
    """Each connection's whole answer (the requests say Connection: close)."""
    received = {sock: bytearray() for sock in sockets}
    open_ = set(sockets)
    while open_:
        readable, _, _ = select.select(list(open_), [], [], DEADLINE_SECONDS)
        assert readable, f"{len(open_)} of {len(sockets)} connections never finished answering"
        for sock in readable:
            chunk = sock.recv(65536)
            if chunk:
                received[sock] += chunk
            else:
                open_.discard(sock)
    return [bytes(received[sock]) for sock in sockets]


def test_a_burst_of_connections_is_queued_and_every_request_answered(
    stack: RunningStack,
) -> None:
    """200 clients connect while the stack is not accepting (stopped): the kernel completes
    every handshake into the listen backlog (socketserver's default of 5 holds 6, and the
    others never connect while the stack is busy), then every request gets its answer."""
    client, token = signed_in(stack)
    user_id = client.request("GET", "/me", bearer=token).json()["user_id"]
    fingerprint = client.cookie("__Host-fgp")
    request = (
        f"GET /me HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\n"
        f"Authorization: Bearer {token}\r\nCookie: __Host-fgp={fingerprint}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    sockets: list[socket.socket] = []
    try:
        with stopped(stack.process.pid):
            sockets = _connect_all(stack.port, BURST)
            refused = _unconnected(sockets)
            assert not refused, f"{len(refused)} of {BURST} connections not taken into the backlog"
            for sock in sockets:
                sock.sendall(request)
        answers = _read_all(sockets)
    finally:
        for sock in sockets:
            sock.close()
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert statuses == [b"200"] * BURST, sorted(set(statuses))
    for answer in answers:
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["user_id"] == user_id
    # The burst was served by containers, never more than the pool's size per function.
    for pool in containers(stack)["functions"]:
        assert 1 <= len(pool["containers"]) <= CONCURRENCY


# --- (b), (c) containers ------------------------------------------------------------------------


def test_concurrent_requests_to_one_function_run_in_separate_containers(
    stack: RunningStack,
) -> None:
    """Every container of the issuer is stopped with a request in it; one more request cannot
    wait behind them: a new container (a process of its own) answers it."""
    held = [entry["pid"] for entry in pool_of(stack, "IssuerFunction")]
    assert len(held) < CONCURRENCY
    jwks = "/.well-known/jwks.json"
    with ThreadPoolExecutor(len(held) + 1) as threads:
        with stopped(*held):
            futures = [
                threads.submit(stack.client().request, "GET", jwks, timeout=REQUEST_TIMEOUT_SECONDS)
                for _ in range(len(held) + 1)
            ]
            answered, pending = first_done(futures)
            assert answered.status == 200, answered
            assert not any(future.done() for future in pending)
        assert all(future.result().status == 200 for future in pending)
    issuers = pool_of(stack, "IssuerFunction")
    pids = [entry["pid"] for entry in issuers]
    stack_pid = containers(stack)["stack_pid"]
    assert stack_pid == stack.process.pid
    # Separate processes, none of them the stack's; each its own cold start and its own count.
    assert len(set(pids)) == len(held) + 1
    assert stack_pid not in pids
    assert all(entry["invocations"] >= 1 for entry in issuers)
    assert all(entry["init_ms"] > 0 for entry in issuers)


def test_a_moved_clock_is_the_same_in_every_container(stack: RunningStack) -> None:
    stack.advance_clock(1000)
    offset = stack.client().request("GET", "/_dev/clock").json()["offset"]
    assert offset >= 1000
    pools = containers(stack)["functions"]
    assert sum(len(pool["containers"]) for pool in pools) > len(pools)  # some have several
    for pool in pools:
        for entry in pool["containers"]:
            # As read in the container, through the Runtime its handler uses.
            assert entry["clock_offset"] == offset, (pool["function"], entry)
    before = stack.clock()
    _client, token = signed_in(stack)
    after = stack.clock()
    assert int(before) <= claims_of(token)["iat"] <= after


# --- a container's death ------------------------------------------------------------------------


def test_a_container_killed_mid_request_is_a_500_and_its_function_recovers(
    stack: RunningStack,
) -> None:
    client, token = signed_in(stack)
    held = [entry["pid"] for entry in pool_of(stack, "RevokerFunction")]
    assert len(held) < CONCURRENCY

    def sessions() -> Response:
        return client.copy().request(
            "GET", "/auth/sessions", bearer=token, timeout=REQUEST_TIMEOUT_SECONDS
        )

    with ThreadPoolExecutor(len(held) + 1) as threads:
        with stopped(*held):
            futures = [threads.submit(sessions) for _ in range(len(held) + 1)]
            # One more request than stopped containers: when it is answered (by a new
            # container), every stopped one holds a request.
            answered, pending = first_done(futures)
            assert answered.status == 200, answered
            for pid in held:
                os.kill(pid, signal.SIGKILL)
        lost = [future.result() for future in pending]
    for response in lost:
        assert (response.status, response.json()) == (500, {"message": "Internal Server Error"})
    assert "died during an invocation (killed by SIGKILL)" in stack.logs()
    assert sessions().status == 200
    assert not set(held) & {entry["pid"] for entry in pool_of(stack, "RevokerFunction")}


# --- the end ------------------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="reads /proc and waits on pidfds")
def test_killing_the_stack_leaves_no_process_behind(stack: RunningStack) -> None:
    """SIGKILL gives the stack no chance to stop anything: its containers, the fork server and
    the AWS endpoint end by themselves (each reads EOF on a pipe only the stack held)."""
    family = descendants(stack.process.pid)
    listed = {
        entry["pid"] for pool in containers(stack)["functions"] for entry in pool["containers"]
    }
    assert listed <= family
    assert len(family) > len(listed)  # the fork server and the AWS endpoint too
    stack.process.kill()
    stack.process.wait()
    assert still_running(family) == set()
