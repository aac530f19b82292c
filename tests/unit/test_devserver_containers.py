"""The local stack's function containers (devserver.lambdas, devserver.container): real
processes running a probe function (tests/unit/container_probe.py), without the HTTP stack.

Concurrency is made deterministic with SIGSTOP instead of timing: a stopped container holds
its invocation for as long as the test wants, so "the other request must have gone to another
container" is a fact, not a race. Nothing sleeps; every wait has a generous deadline that only
a broken pool reaches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import pytest

from devserver import lambdas
from devserver.clock import DevClock, SharedOffset
from devserver.gateway import FunctionError, IntegrationError
from devserver.lambdas import FunctionPool
from devserver.settings import DevError
from devserver.stack import FunctionSpec
from tests.concurrency import run_at_once

SPEC = FunctionSpec(
    logical_id="ProbeFunction",
    name="tokencore-local-ProbeFunction",
    arn="arn:aws:lambda:us-east-1:123456789012:function:tokencore-local-ProbeFunction",
    module="tests.unit.container_probe",
    handler="handler",
    memory_mb=128,
    timeout_seconds=3,
)
# The containers' environment is the stack's, never the test process's.
ENVIRONMENT = {"PATH": os.environ.get("PATH", ""), "PROBE_MARK": "the stack's environment"}
DEADLINE_SECONDS = 120.0  # only a broken pool gets near it

Answer = dict[str, Any]
MakePool = Callable[..., FunctionPool]


@pytest.fixture
def shared() -> Iterator[tuple[DevClock, SharedOffset]]:
    page = SharedOffset.create()
    yield DevClock(shared=page), page
    page.close()


@pytest.fixture
def make_pool(shared: tuple[DevClock, SharedOffset]) -> Iterator[MakePool]:
    created: list[FunctionPool] = []

    def make(
        concurrency: int = 2,
        wait_seconds: float = lambdas.INTEGRATION_TIMEOUT_SECONDS,
        pool_class: type[FunctionPool] = FunctionPool,
        spec: FunctionSpec = SPEC,
    ) -> FunctionPool:
        pool = pool_class(
            spec, ENVIRONMENT, shared[1], concurrency=concurrency, wait_seconds=wait_seconds
        )
        created.append(pool)
        return pool

    yield make
    for pool in created:
        pool.close()
    for pool in created:
        pool.join()


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These containers are stopped (SIGSTOP) inside the block: whatever they hold, they hold."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # killed meanwhile
                os.kill(pid, signal.SIGCONT)


def invoke(pool: FunctionPool, event: dict[str, Any] | None = None) -> Answer:
    answer: Answer = pool.invoke(event or {})
    return answer


def first_done(futures: list[Future[Answer]]) -> tuple[Future[Answer], list[Future[Answer]]]:
    done, _pending = wait(futures, timeout=DEADLINE_SECONDS, return_when=FIRST_COMPLETED)
    assert done, "no invocation finished"
    first = next(iter(done))
    return first, [future for future in futures if future is not first]


def test_a_container_runs_its_function_in_a_process_of_its_own(make_pool: MakePool) -> None:
    pool = make_pool()
    pool.start()
    pool.ready()
    first = invoke(pool, {"hello": "world"})
    second = invoke(pool)
    assert first["pid"] != os.getpid()
    assert first["pid"] == second["pid"]  # warm: the same container again
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert first["event"] == {"hello": "world"}  # the event crossed as JSON
    assert first["mark"] == "the stack's environment"
    # Lambda's context: the function's name, a request id per invocation, the time left.
    assert first["function_name"] == SPEC.name
    assert first["request_id"] != second["request_id"]
    assert 0 < first["remaining_ms"] <= SPEC.timeout_seconds * 1000
    assert pool.cold_starts == 1


def test_concurrent_invocations_run_in_separate_containers_with_separate_state(
    make_pool: MakePool,
) -> None:
    pool = make_pool(concurrency=2)
    warm = invoke(pool)
    with ThreadPoolExecutor(2) as threads:
        with stopped(warm["pid"]):
            # One invocation takes the stopped container and stays there; the other cannot
            # wait behind it: it gets a container of its own.
            futures = [threads.submit(invoke, pool) for _ in range(2)]
            first, (held,) = first_done(futures)
            other = first.result()
            assert other["pid"] != warm["pid"]
            assert other["invocations"] == 1  # a fresh module, not the warm one's count
            assert not held.done()
        resumed = held.result(timeout=DEADLINE_SECONDS)
    assert resumed["pid"] == warm["pid"]
    assert resumed["invocations"] == 2
    assert len({container.pid for container in pool.containers()}) == 2
    assert pool.cold_starts == 2


def test_beyond_its_size_a_request_waits_then_gets_api_gateways_503(
    make_pool: MakePool,
) -> None:
    pool = make_pool(concurrency=1, wait_seconds=0.2)
    pool.start()
    pool.ready()
    warm = invoke(pool)
    with ThreadPoolExecutor(2) as threads:
        with stopped(warm["pid"]):
            futures = [threads.submit(invoke, pool) for _ in range(2)]
            first, (held,) = first_done(futures)
            refused = first.exception()
            assert isinstance(refused, IntegrationError)
            assert (refused.status, refused.message) == (503, "Service Unavailable")
            assert "DEV_FUNCTION_CONCURRENCY=1" in refused.reason
        assert held.result(timeout=DEADLINE_SECONDS)["pid"] == warm["pid"]
    assert pool.cold_starts == 1  # it never grew past its size


THREADS = 8


def test_the_pool_never_starts_more_containers_than_its_size(make_pool: MakePool) -> None:
    pool = make_pool(concurrency=2)
    answers = run_at_once(THREADS, lambda: invoke(pool))
    assert len(answers) == THREADS  # every request served, by at most two containers
    assert len({answer["pid"] for answer in answers}) <= 2
    assert pool.cold_starts <= 2


def test_a_pool_that_checks_for_room_then_claims_it_would_overshoot(make_pool: MakePool) -> None:
    """The deliberately broken variant: the check and the claim as two steps, the lock let go
    in between. A barrier lets every request check before any claims, and each starts a
    container."""
    barrier = threading.Barrier(THREADS)

    class CheckThenClaim(FunctionPool):
        def _claim_slot(self) -> bool:  # called with the lock held
            room = self._size < self.concurrency
            self._changed.release()
            try:
                barrier.wait()
            finally:
                self._changed.acquire()
            if room:
                self._size += 1
                self.cold_starts += 1
            return room

    pool = make_pool(concurrency=2, pool_class=CheckThenClaim)
    run_at_once(THREADS, lambda: invoke(pool))
    assert pool.cold_starts == THREADS > pool.concurrency


def test_a_container_that_dies_mid_invocation_is_a_500_and_is_replaced(
    make_pool: MakePool,
) -> None:
    pool = make_pool()
    warm = invoke(pool)
    with pytest.raises(IntegrationError) as died:
        invoke(pool, {"action": "exit"})
    assert (died.value.status, died.value.message) == (500, "Internal Server Error")
    assert f"container {warm['pid']} died during an invocation (exit code 3)" in died.value.reason
    after = invoke(pool)
    assert after["pid"] != warm["pid"]
    assert after["invocations"] == 1
    assert [container.pid for container in pool.containers()] == [after["pid"]]


def test_an_idle_container_that_died_costs_no_request(make_pool: MakePool) -> None:
    pool = make_pool()
    warm = invoke(pool)
    (container,) = pool.containers()
    os.kill(warm["pid"], signal.SIGKILL)
    container.process.join(DEADLINE_SECONDS)
    assert container.process.exitcode == -signal.SIGKILL
    # It never saw this event: another container takes it.
    assert invoke(pool)["pid"] != warm["pid"]


def test_a_handlers_exception_is_the_invocations_error(make_pool: MakePool) -> None:
    pool = make_pool()
    warm = invoke(pool)
    with pytest.raises(FunctionError) as raised:
        invoke(pool, {"action": "raise"})
    assert str(raised.value) == "the probe was told to fail"
    assert raised.value.error_type == "ValueError"
    assert "container_probe.py" in "".join(raised.value.stack_trace)
    with pytest.raises(FunctionError) as unserializable:
        invoke(pool, {"action": "unserializable"})
    assert unserializable.value.error_type == "Runtime.MarshalError"
    assert invoke(pool)["pid"] == warm["pid"]  # an error does not cost the container


def test_a_function_that_cannot_be_imported_is_named(make_pool: MakePool) -> None:
    missing = FunctionSpec(
        "MissingFunction", "missing", SPEC.arn, "tests.unit.no_such_module", "handler", 128, 3
    )
    pool = make_pool(spec=missing)
    pool.start()
    with pytest.raises(DevError, match=r"^MissingFunction: cannot import tests\.unit\.no_such"):
        pool.ready()
    # At request time the same failure is API Gateway's 500, and the slot is free again.
    with pytest.raises(IntegrationError) as failed:
        invoke(pool)
    assert failed.value.status == 500
    assert pool.containers() == []


def test_every_container_reads_the_stacks_clock(
    make_pool: MakePool, shared: tuple[DevClock, SharedOffset]
) -> None:
    clock, _page = shared
    pool = make_pool(concurrency=2)
    warm = invoke(pool)
    with ThreadPoolExecutor(2) as threads, stopped(warm["pid"]):
        first_done([threads.submit(invoke, pool) for _ in range(2)])
    assert len(pool.containers()) == 2

    clock.advance(1000)  # written once, in this process; read in every container
    described = pool.describe()["containers"]
    assert [entry["clock_offset"] for entry in described] == [1000.0, 1000.0]
    before = clock.now()
    answer = invoke(pool)
    assert before <= answer["now"] <= clock.now()


def test_a_stopped_idle_container_cannot_hang_the_containers_page(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lambdas, "DESCRIBE_TIMEOUT_SECONDS", 0.2)
    pool = make_pool()
    warm = invoke(pool)
    with stopped(warm["pid"]):
        assert pool.describe()["containers"] == []  # it did not answer: ended, not listed
    assert invoke(pool)["pid"] != warm["pid"]


def test_closing_the_pool_ends_every_container(make_pool: MakePool) -> None:
    pool = make_pool(concurrency=2)
    warm = invoke(pool)
    with ThreadPoolExecutor(2) as threads, stopped(warm["pid"]):
        first_done([threads.submit(invoke, pool) for _ in range(2)])
    containers = pool.containers()
    pool.close()
    pool.join()
    assert all(container.process.exitcode is not None for container in containers)
    with pytest.raises(IntegrationError) as closed:
        invoke(pool)
    assert closed.value.status == 503
