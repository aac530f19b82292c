"""Budget 5: the authorizer's peak RSS after 10,000 invocations against after the first 100,
and under 64 MiB (the smallest memory size worth giving a Lambda function is 128 MB).

One fresh process answers 10,000 HTTP API events cycling over 2,000 distinct tokens: more than
the claims cache holds (1,024), so the cache fills, then evicts on every request; a cache
that grew without bound, or any per-request leak, shows as growth after the first 100.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    Budget,
    LocalAws,
    authorizer_environment,
    make_fixture,
    table,
)

CHILD = Path(__file__).resolve().parent / "memory_child.py"
INVOCATIONS = 10_000
DISTINCT_TOKENS = 2_000


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    fixture = make_fixture()
    tokens = fixture.mint(DISTINCT_TOKENS)
    aws = LocalAws(fixture)
    try:
        return _run(fixture, tokens, aws.url)
    finally:
        aws.stop()


def _run(fixture: Any, tokens: list[str], aws_endpoint: str) -> tuple[list[str], list[Budget]]:
    with tempfile.TemporaryDirectory(prefix="tokencore-bench-") as tmp:
        tokens_file = Path(tmp) / "tokens.txt"
        tokens_file.write_text("\n".join(tokens), encoding="ascii")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            **authorizer_environment(fixture, aws_endpoint),
            "BENCH_TOKENS": str(tokens_file),
            "BENCH_EVENT": json.dumps(fixture.event("{{access_token}}")),
        }
        result = subprocess.run(
            [sys.executable, str(CHILD), str(INVOCATIONS)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"memory child failed: {result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    peaks = {int(k): v / 1024 for k, v in report["peaks_kib"].items()}
    current = {int(k): v / 1024 for k, v in report["current_kib"].items()}
    if report["allowed"] != INVOCATIONS:
        raise RuntimeError(f"only {report['allowed']} of {INVOCATIONS} invocations were allowed")
    first, last = peaks[100], peaks[INVOCATIONS]
    rows = [[f"{n:,}", f"{mib:.1f}", f"{current[n]:.1f}"] for n, mib in sorted(peaks.items())]
    lines = [
        "### Memory (one process, peak RSS)",
        "",
        f"{INVOCATIONS:,} HTTP API events over {DISTINCT_TOKENS:,} distinct tokens; the claims "
        f"cache ends with {report['cache_entries']:,} entries.",
        "",
        table(["after invocations", "peak RSS MiB", "current RSS MiB"], rows),
    ]
    budgets = [
        Budget("5a", "peak RSS after 10,000 ÷ after 100 invocations", last / first, 1.1),
        Budget("5b", "peak RSS after 10,000 invocations", last, 64.0, unit="MiB"),
    ]
    return lines, budgets
