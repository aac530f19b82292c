"""Every log line of the whole test run, for the log-hygiene check (``test_log_hygiene.py``).

Three sources, installed by ``tests/conftest.py`` at session start:

* every ``logging.LogRecord`` any logger handles in this process (``Logger.handle`` is teed, so
  propagation, levels set by tests and handler wiring do not matter: Powertools' own loggers,
  ``tokencore.*``, botocore, anything). A record is kept rendered three ways: its message, its
  whole ``__dict__`` (the structured ``extra`` fields a JSON formatter would print) and its
  exception text;
* what each test printed to stdout and stderr (pytest's captured sections of every report:
  the Powertools JSON lines and EMF metric documents the functions write to stdout);
* the log files of the local stacks the e2e and security tiers run as subprocesses
  (``stdout.log`` and ``stderr.log`` under this run's temporary directory), read when scanned.

Lines are deduplicated as they arrive (the count of lines seen is kept): the check only needs
each distinct line once, and a run repeats the same access line thousands of times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STACK_LOG_NAMES = ("stdout.log", "stderr.log")


class LogCapture:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, str] = {}  # line -> where it was first seen
        self.records = 0
        self.record_lines = 0
        self.output_lines = 0
        self._paused = 0

    def _add(self, text: str, where: str) -> int:
        count = 0
        for line in text.splitlines():
            count += 1
            if line and line not in self._lines:
                self._lines[line] = where
        return count

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Drop records while a test prints a secret on purpose (a control that proves a
        check can see one): the whole-run check is about what the product logs."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def add_record(self, record: logging.LogRecord) -> None:
        if self._paused:
            return
        rendered = [_message(record), _fields(record)]
        if record.exc_info and record.exc_info[1] is not None:
            rendered.append(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            rendered.append(record.stack_info)
        with self._lock:
            self.records += 1
            self.record_lines += self._add("\n".join(rendered), f"log record {record.name}")

    def add_output(self, text: str, where: str) -> None:
        with self._lock:
            self.output_lines += self._add(text, where)

    def lines(self) -> list[tuple[str, str]]:
        """(where, line) for every distinct line captured in this process so far."""
        with self._lock:
            return [(where, line) for line, where in self._lines.items()]

    def install(self) -> Callable[[], None]:
        """Tee ``logging.Logger.handle``; returns the undo."""
        original = logging.Logger.handle
        capture = self

        def handle(logger: logging.Logger, record: logging.LogRecord) -> None:
            with contextlib.suppress(Exception):  # capturing never changes what a test sees
                capture.add_record(record)
            original(logger, record)

        setattr(logging.Logger, "handle", handle)  # noqa: B010  (mypy: a method replaced)
        return lambda: setattr(logging.Logger, "handle", original)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad %-format is still a line someone would read
        return str(record.msg)


def _fields(record: logging.LogRecord) -> str:
    fields: dict[str, Any] = {
        name: value for name, value in record.__dict__.items() if name not in ("msg", "args")
    }
    try:
        return json.dumps(fields, default=repr, sort_keys=True)
    except Exception:
        return repr(fields)


def stack_log_lines(base: Path) -> Iterator[tuple[str, str]]:
    """(where, line) for each line of the local stacks' log files under ``base``."""
    for name in STACK_LOG_NAMES:
        for path in sorted(base.rglob(name)):
            text = path.read_text(encoding="utf-8", errors="replace")
            where = f"{path.parent.name}/{name}"
            for line in text.splitlines():
                if line:
                    yield where, line


CAPTURE = LogCapture()
