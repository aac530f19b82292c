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
