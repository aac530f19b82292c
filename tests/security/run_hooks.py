"""The pytest hooks behind the whole-run log capture and the security summary.

``tests/conftest.py`` delegates its ``pytest_*`` hooks here (one line each), so the mechanism
lives with the security tier that owns it:

* session start: tee every log record (``log_capture``) and register every secret tokencore
  produces (``secrets_registry``), before anything is collected or imported by tests;
* each report: keep what the test printed (stdout/stderr sections);
* collection: tests marked ``run_last`` go last, so the hygiene check sees the whole run
  whatever the order of the test paths;
* session finish: the lines that arrived after the hygiene check (local stacks stopping,
  session fixtures tearing down) are scanned too, and a leak there fails the run;
* terminal summary: the attack table and the number of log lines scanned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.security.log_capture import CAPTURE, stack_log_lines
from tests.security.secrets_registry import REGISTRY, Leak
from tests.security.tally import summary_lines

RUN_LAST = "run_last"


@dataclass
class HygieneResult:
    lines_scanned: int = 0
    distinct_lines: int = 0
    stack_lines: int = 0
    secrets: int = 0
    leaks: list[Leak] = field(default_factory=list)
    checked: bool = False
    scanned: set[str] = field(default_factory=set)


RESULT = HygieneResult()
_undo: list[Callable[[], None]] = []


def configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{RUN_LAST}: run after every other test (the whole-run log hygiene check)"
    )


def session_start() -> None:
    _undo.append(CAPTURE.install())
    # Every tokencore log call makes a record, INFO and DEBUG included: the check covers what
    # an operator could turn on, not only what the default level shows.
    library = logging.getLogger("tokencore")
    level = library.level
    library.setLevel(logging.DEBUG)
    _undo.append(lambda: library.setLevel(level))
    from tests.security.secrets_registry import install

    _undo.append(install())


def order_last(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker(RUN_LAST)]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker(RUN_LAST)] + last


def log_report(report: pytest.TestReport) -> None:
    for title, content in report.sections:
        if title.startswith(("Captured stdout", "Captured stderr")):
            CAPTURE.add_output(content, f"{report.nodeid} ({title.lower()})")


def scan(base: Path | None) -> HygieneResult:
    """Scan everything captured so far (and the stack logs under ``base``) once."""
    stack = list(stack_log_lines(base)) if base is not None else []
    lines = CAPTURE.lines() + stack
    fresh = [(where, line) for where, line in lines if line not in RESULT.scanned]
    RESULT.leaks += REGISTRY.scan(fresh)
    RESULT.scanned.update(line for _, line in fresh)
    RESULT.stack_lines = len(stack)
    RESULT.lines_scanned = CAPTURE.record_lines + CAPTURE.output_lines + len(stack)
    RESULT.distinct_lines = len(RESULT.scanned)
    RESULT.secrets = len(REGISTRY)
    RESULT.checked = True
    return RESULT


def session_finish(session: pytest.Session) -> None:
    if RESULT.checked:
        before = len(RESULT.leaks)
        base = _basetemp(session.config)
        scan(base)
        if len(RESULT.leaks) > before:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    while _undo:
        _undo.pop()()


def terminal_summary(reporter: Any) -> None:
    lines = summary_lines()
    if lines:
        reporter.write_sep("-", "security: attacks tried per category")
        for line in lines:
            reporter.write_line(line)
    if RESULT.checked:
        reporter.write_sep("-", "security: log hygiene")
        reporter.write_line(
            f"  {RESULT.lines_scanned:,} log lines scanned ({RESULT.distinct_lines:,} distinct, "
            f"{CAPTURE.records:,} log records, {RESULT.stack_lines:,} lines of local-stack logs)"
            f" for {RESULT.secrets:,} registered secrets: {len(RESULT.leaks)} leaks"
        )
        for leak in RESULT.leaks[:20]:
            reporter.write_line(f"  LEAK {leak.kind} in {leak.where}: {leak.excerpt}")


def _basetemp(config: pytest.Config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return None
    with contextlib.suppress(Exception):
        return Path(factory.getbasetemp())
    return None
