"""Run one action in many threads at once, to test what must be atomic under concurrency."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def run_at_once[T](count: int, action: Callable[[], T]) -> list[T]:
    """Start ``count`` threads released together by a barrier, each running ``action``; return
    their results. Threads switch as often as the interpreter allows meanwhile, so an unguarded
    read-modify-write would interleave (with the default interval the GIL hides most races)."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        result = action()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    return results


class InOrder:
    """Lets threads through a step one at a time, in a fixed order of keys: the worst
    interleaving a race test wants, made certain. ``with in_order.turn(key):`` waits until every
    key listed before ``key`` has finished its turn."""

    def __init__(self, order: list[object], *, timeout: float = 30.0) -> None:
        self._order = list(order)
        self._next = 0
        self._condition = threading.Condition()
        self._timeout = timeout

    def turn(self, key: object) -> _Turn:
        return _Turn(self, self._order.index(key))

    def _wait_for(self, index: int) -> None:
        with self._condition:
            if not self._condition.wait_for(lambda: self._next == index, self._timeout):
                raise TimeoutError("a thread never took its turn")

    def _finish(self, index: int) -> None:
        with self._condition:
            self._next = index + 1
            self._condition.notify_all()


class _Turn:
    def __init__(self, in_order: InOrder, index: int) -> None:
        self._in_order = in_order
        self._index = index

    def __enter__(self) -> None:
        self._in_order._wait_for(self._index)

    def __exit__(self, *_: object) -> None:
        self._in_order._finish(self._index)
