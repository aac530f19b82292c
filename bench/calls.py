"""Budget 4: AWS calls per operation. The figures are the assertions of
tests/functional/test_call_counts.py (part of `make test`), run here with a report file so
the table shows exactly what the tests counted: botocore's ``_make_api_call``, through the real
handlers, each function in its own container."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import REPO_ROOT, Budget, hermetic_environment, table

TEST = "tests/functional/test_call_counts.py"
BUDGETS = {
    "authorizer fast path": 0,
    "authorizer sensitive path": 1,
    "login": 4,
    "refresh": 3,
    "logout": 2,
}


def _summary(calls: list[str]) -> str:
    if not calls:
        return "none"
    counted = Counter(call.split(":", 1)[1] if ":" in call else call for call in calls)
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counted.items())


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    with tempfile.TemporaryDirectory(prefix="tokencore-calls-") as tmp:
        report = Path(tmp) / "calls.jsonl"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
            cwd=REPO_ROOT,
            env=hermetic_environment(BENCH_CALLS_REPORT=str(report)),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{TEST} failed:\n{result.stdout[-3000:]}")
        entries = [json.loads(line) for line in report.read_text().splitlines()]
    first: dict[str, list[str]] = {}
    warm: dict[str, list[str]] = {}
    for entry in entries:
        # "first in container", "cold: the revocation list": a container's one-time reads.
        phase = entry["phase"]
        target = first if phase.startswith(("first", "cold")) else warm
        target.setdefault(entry["operation"], entry["calls"])
    rows = []
    budgets = []
    for operation, limit in BUDGETS.items():
        calls = warm[operation]
        rows.append(
            [
                operation,
                str(len(calls)),
                f"≤ {limit}",
                _summary(calls),
                str(len(first[operation])) if operation in first else "same",
            ]
        )
        budgets.append(
            Budget(
                "4",
                f"AWS calls: {operation} (warm)",
                len(calls),
                limit,
                unit="calls",
                note=_summary(calls),
            )
        )
    # The login's other outcomes (a wrong password, a full rate-limit window): shown, no budget.
    for operation, calls in warm.items():
        if operation not in BUDGETS:
            rows.append([operation, str(len(calls)), "-", _summary(calls), "same"])
    lines = [
        "### AWS calls per operation (asserted in `make test`)",
        "",
        f"Counted by `{TEST}` (botocore `_make_api_call`, moto behind it); warm container, and "
        "the first operation of a container, which also reads the key sets it needs, once.",
        "",
        table(["operation", "calls", "budget", "which", "first in container"], rows),
    ]
    return lines, budgets
