"""The embedded AWS endpoint (devserver.awsendpoint) in a process of its own.

moto does real work per call (parsing, condition evaluation, serialization); in its own
process it has its own interpreter lock instead of sharing the gateway's, which serves every
HTTP connection of the API. ``AwsProcess`` starts it with the multiprocessing ``spawn``
method (a fresh interpreter: nothing of the stack's state), waits until it listens, and ends
it with the stack: it holds a lifeline like the function containers (devserver.container),
so it never outlives the stack, however the stack ends.

``wrap`` (fault injection, devserver.awsendpoint) crosses the process boundary by pickling:
a module-level function, or a ``functools.partial`` of one, with picklable arguments.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Final

from devserver.awsendpoint import EmbeddedAws, WsgiApp

READY_TIMEOUT_SECONDS: Final = 120.0
STOP_TIMEOUT_SECONDS: Final = 5.0
IN_USE: Final = b"in-use"
_SPAWN: Final = multiprocessing.get_context("spawn")


class AwsPortInUse(Exception):
    """The endpoint's port was taken (between the stack's probe and the bind)."""


class AwsProcess:
    """``EmbeddedAws(host, port, wrap=wrap)`` served in its own process."""

    def __init__(
        self, host: str, port: int, *, wrap: Callable[[WsgiApp], WsgiApp] | None = None
    ) -> None:
        ours, theirs = _SPAWN.Pipe()
        lifeline_read, self._lifeline = _SPAWN.Pipe(duplex=False)
        self._process = _SPAWN.Process(
            target=serve,
            args=(host, port, wrap, theirs, lifeline_read),
            name="embedded-aws",
            daemon=True,
        )
        try:
            self._process.start()
        finally:
            theirs.close()
            lifeline_read.close()
        self._channel = ours

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until it listens; AwsPortInUse or RuntimeError when it cannot."""
        try:
            if not self._channel.poll(timeout):
                raise RuntimeError(f"the embedded AWS endpoint did not start within {timeout} s")
            answer = self._channel.recv_bytes()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"the embedded AWS endpoint exited while starting ({self._process.exitcode})"
            ) from exc
        finally:
            self._channel.close()
        if answer == IN_USE:
            raise AwsPortInUse

    def stop(self) -> None:
        self._lifeline.close()
        self._process.join(STOP_TIMEOUT_SECONDS)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join()


def serve(
    host: str,
    port: int,
    wrap: Callable[[WsgiApp], WsgiApp] | None,
    channel: Connection,
    lifeline: Connection,
) -> None:
    """The endpoint process: bind, say so, serve until the lifeline reads EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack ends this process itself
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log
    try:
        aws = EmbeddedAws(host, port, wrap=wrap)
    except SystemExit:  # werkzeug's way to fail a bind; it has printed why
        with contextlib.suppress(OSError):
            channel.send_bytes(IN_USE)
        return
    aws.start()
    with contextlib.suppress(OSError):
        channel.send_bytes(b"ready")
    channel.close()

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                lifeline.recv_bytes()  # nothing is ever sent: only EOF matters
        os._exit(0)

    watcher = threading.Thread(target=watch, name="lifeline", daemon=True)
    watcher.start()
    watcher.join()
