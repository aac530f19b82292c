"""The local stack's clock, which tests can move forward instead of waiting.

Every function of the local stack reads time through its container's ``Runtime``
(tokencore.runtime), so one clock decides token expiry, the refresh grace window, rate-limit
windows, key-cache TTLs and key-rotation stamps. ``DevClock`` is the wall clock plus an offset
that only grows. The stack owns the offset; its function containers are other processes
(devserver.lambdas), so the offset lives in a page of shared memory (``SharedOffset``) that the
stack writes and every container reads at every ``now()``: a moved clock is the same in every
container at once, with no round trip per request.

The local stack answers ``/_dev/clock`` before API routing (``DEV_CLOCK_CONTROL=0`` turns it
off):

* ``GET /_dev/clock``: ``{"now": <epoch seconds>, "offset": <seconds>}``;
* ``POST /_dev/clock`` with ``Content-Type: application/json`` and ``{"advance_seconds": n}``
  (0 <= n <= one year): moves the clock forward and answers the same.

On by default because it is the local stack's alone: it listens on 127.0.0.1, keeps
everything in memory, and the clock only moves forward, so a newcomer's walkthrough and the
tests move time instead of waiting for it. A web page cannot move it either: a JSON POST from
another origin needs a CORS preflight, which this route never grants. Never part of
template.yaml or the layer: a deployed stack has no such route, and its clock is the
platform's. ``make ctl`` asks the stack for the offset first, so tokenctl (another process)
stamps key rotations on the same clock.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the gateway is imported where it is used: a container reads the clock only
    from devserver.gateway import HttpRequest, HttpResponse

CLOCK_PATH: Final = "/_dev/clock"
ENABLE_VARIABLE: Final = "DEV_CLOCK_CONTROL"
MAX_ADVANCE_SECONDS: Final = 366 * 24 * 3600
JSON_ONLY: Final = "send Content-Type: application/json"
_JSON: Final = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


class SharedOffset:
    """One float in a page of shared memory: written by the stack, read by every container.

    A seqlock keeps each read whole without a lock across processes: the writer makes the
    sequence odd, writes the value, makes it even again; a reader retries when it saw an odd
    sequence or a different one after reading the value. One writer only (the stack, under
    DevClock's lock); containers map the page read-only.
    """

    _SEQUENCE: Final = struct.Struct("=Q")  # at offset 0
    _VALUE: Final = struct.Struct("=d")  # at offset 8
    _MAX_READ_ATTEMPTS: Final = 100_000  # a writer holds the page for three stores

    def __init__(self, memory: mmap.mmap, backing: IO[bytes] | None, fd: int) -> None:
        self._memory = memory
        self._backing = backing  # the stack's unlinked file, kept open with the mapping
        self._fd = fd

    @classmethod
    def create(cls) -> SharedOffset:
        """A new page (an unlinked temporary file), zero, for the stack to write."""
        backing = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the mapping
        backing.truncate(mmap.PAGESIZE)
        memory = mmap.mmap(backing.fileno(), mmap.PAGESIZE, access=mmap.ACCESS_WRITE)
        return cls(memory, backing, backing.fileno())

    @classmethod
    def attach(cls, fd: int) -> SharedOffset:
        """The stack's page, read-only, from the descriptor a container was started with."""
        return cls(mmap.mmap(fd, mmap.PAGESIZE, access=mmap.ACCESS_READ), None, fd)

    def fileno(self) -> int:
        return self._fd

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to a container (``multiprocessing``): the descriptor travels with it, and the
        page is mapped read-only there."""
        from multiprocessing.reduction import DupFd

        return (SharedOffset._received, (DupFd(self._fd),))

    @classmethod
    def _received(cls, passed: Any) -> SharedOffset:
        return cls.attach(passed.detach())

    def read(self) -> float:
        for _ in range(self._MAX_READ_ATTEMPTS):
            before = self._SEQUENCE.unpack_from(self._memory, 0)[0]
            value = float(self._VALUE.unpack_from(self._memory, 8)[0])
            if before % 2 == 0 and self._SEQUENCE.unpack_from(self._memory, 0)[0] == before:
                return value
        raise RuntimeError("the shared clock offset stayed mid-write")  # its writer is gone

    def write(self, value: float) -> None:
        sequence = self._SEQUENCE.unpack_from(self._memory, 0)[0]
        self._SEQUENCE.pack_into(self._memory, 0, sequence + 1)
        self._VALUE.pack_into(self._memory, 8, value)
        self._SEQUENCE.pack_into(self._memory, 0, sequence + 2)

    def close(self) -> None:
        self._memory.close()
        if self._backing is not None:
            self._backing.close()


class DevClock:
    """Wall clock plus a forward-only offset (thread-safe). With ``shared``, the offset lives in
    that page: the stack's clock writes it, a container's clock (``SharedOffset.attach``)
    follows it."""

    def __init__(self, offset: float = 0.0, *, shared: SharedOffset | None = None) -> None:
        self._lock = threading.Lock()
        self._shared = shared
        self._offset = _checked(offset, math.inf)
        if shared is not None and offset:
            shared.write(self._offset)

    @property
    def offset(self) -> float:
        if self._shared is not None:
            return self._shared.read()
        with self._lock:
            return self._offset

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: object) -> float:
        """Move forward by ``seconds``; returns the new time. Never backwards: every store
        assumes time does not run back (rate windows, rotation stamps, grace windows)."""
        seconds = _checked(seconds)
        with self._lock:
            self._offset += seconds
            if self._shared is not None:
                self._shared.write(self._offset)
        return self.now()


def _checked(seconds: object, maximum: float = MAX_ADVANCE_SECONDS) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= maximum
    ):
        raise ValueError(f"advance_seconds must be a number from 0 to {MAX_ADVANCE_SECONDS}")
    return float(seconds)


def control_enabled(env: dict[str, str]) -> bool:
    return env.get(ENABLE_VARIABLE, "1").strip().lower() not in ("0", "false", "no")


def clock_control(clock: DevClock) -> Callable[[HttpRequest], HttpResponse | None]:
    """The ``/_dev/clock`` handler (None for every other path: the API's)."""

    def handle(request: HttpRequest) -> HttpResponse | None:
        if request.raw_path != CLOCK_PATH:
            return None
        if request.method == "POST":
            if _content_type(request) != "application/json":
                return _answer(415, {"error": "invalid_request", "error_description": JSON_ONLY})
            try:
                body = json.loads(request.body or b"{}")
                clock.advance(body["advance_seconds"])
            except (ValueError, KeyError, TypeError) as exc:
                message = str(exc) if isinstance(exc, ValueError) else "advance_seconds missing"
                return _answer(400, {"error": "invalid_request", "error_description": message})
        elif request.method != "GET":
            return _answer(405, {"error": "method_not_allowed"})
        return _answer(200, {"now": clock.now(), "offset": clock.offset})

    return handle


def _content_type(request: HttpRequest) -> str:
    for name, value in request.headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _answer(status: int, document: dict[str, object]) -> HttpResponse:
    from devserver.gateway import HttpResponse

    return HttpResponse(status, list(_JSON), json.dumps(document).encode())


def stack_offset(api_url: str) -> float:
    """The running stack's clock offset (0.0 when it does not offer clock control)."""
    try:
        with urllib.request.urlopen(api_url + CLOCK_PATH, timeout=5) as answer:  # noqa: S310 - loopback
            return _checked(json.load(answer)["offset"], math.inf)
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return 0.0
