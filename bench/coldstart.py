"""Budget 3: the authorizer's cold start as template.yaml deploys it (PUBLIC_JWKS empty: the
keys come from the public JWKS parameter, here moto's server on 127.0.0.1), in fresh
interpreters, against ``import jwt`` plus loading one public key; and that it never imports
boto3.

Each run is a new process (bench/coldstart_child.py); the two kinds alternate, and the figure is
the median of the per-pair ratios. Timed from the child's first line (the interpreter's own
start-up is the same for both and is reported separately). Also reported: the same cold start
from a layer-shaped copy of the code without bytecode, which is what ``sam build`` ships unless
``make build`` compiles it (Lambda's /opt is read-only, so every cold start would compile every
module again), and with it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    Budget,
    LocalAws,
    deployed_authorizer_environment,
    make_fixture,
    spread,
    table,
)

CHILD = Path(__file__).resolve().parent / "coldstart_child.py"

_LIST_MODULES = """
import json, os, sys
sys.argv = ["x", "authorizer"]
import runpy
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    runpy.run_path(os.environ["BENCH_CHILD"], run_name="__main__")
roots = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None) or ""
    if not path or "site-packages" not in path and not path.startswith(os.environ["BENCH_REPO"]):
        continue
    top = name.split(".")[0]
    top_module = sys.modules.get(top)
    spec = getattr(top_module, "__spec__", None)
    locations = list(getattr(spec, "submodule_search_locations", None) or [])
    roots[top] = locations[0] if locations else getattr(top_module, "__file__", path)
print(json.dumps(roots))
"""


def _run(mode: str, env: dict[str, str], cwd: Path) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(CHILD), mode],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"cold start child ({mode}) failed: {result.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report, wall


def _layer_copy(env: dict[str, str], into: Path) -> Path:
    """The packages the authorizer loads (from site-packages and the repository), copied the
    way the layer and the function are laid out, without any __pycache__."""
    listed = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES],
        env={**env, "BENCH_CHILD": str(CHILD), "BENCH_REPO": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    roots: dict[str, str] = json.loads(listed.stdout.strip().splitlines()[-1])
    target = into / "python"
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
    for name, location in sorted(roots.items()):
        source = Path(location)
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / source.name)
    return target


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    fixture = make_fixture(pool=1)
    aws = LocalAws(fixture)
    try:
        return _run_deployed(quick, fixture, aws.url)
    finally:
        aws.stop()


def _run_deployed(quick: bool, fixture: Any, aws_endpoint: str) -> tuple[list[str], list[Budget]]:
    runs = 7 if quick else 21
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT),
        # The template's default: PUBLIC_JWKS empty, the keys read from the parameter.
        **deployed_authorizer_environment(fixture, aws_endpoint),
        "BENCH_EVENT": json.dumps(fixture.events[0]),
        "BENCH_JWK": json.dumps(fixture.public_jwk),
    }
    authorizer_ms: list[float] = []
    jwt_ms: list[float] = []
    walls: dict[str, list[float]] = {"authorizer": [], "jwt": []}
    loaded: list[str] = []
    for index in range(runs):
        modes = ("authorizer", "jwt") if index % 2 == 0 else ("jwt", "authorizer")
        for mode in modes:
            report, wall = _run(mode, base_env, REPO_ROOT)
            walls[mode].append(wall)
            (authorizer_ms if mode == "authorizer" else jwt_ms).append(report["ms"])
            if mode == "authorizer":
                loaded = report["loaded"]
    boto_ms = [_run("boto3", base_env, REPO_ROOT)[0]["ms"] for _ in range(max(3, runs // 3))]
    ratios = [a / j for a, j in zip(authorizer_ms, jwt_ms, strict=True)]
    ratio = statistics.median(ratios)

    # The same cold start from a layer-shaped copy, without and with compiled bytecode.
    bytecode_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="tokencore-layer-") as tmp:
        layer = _layer_copy(base_env, Path(tmp))
        layer_env = {
            **base_env,
            "PYTHONPATH": str(layer),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        copies = 3 if quick else 5
        no_pyc = [_run("authorizer", layer_env, Path(tmp))[0]["ms"] for _ in range(copies)]
        # The command `make build` runs on the built layer and functions.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                str(layer),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with_pyc = [_run("authorizer", layer_env, Path(tmp))[0]["ms"] for _ in range(copies)]
        files = sum(1 for _ in layer.rglob("*.py"))
    jwt_median = statistics.median(jwt_ms)
    bytecode_rows = [
        [
            "layer copy, no bytecode (plain `sam build`)",
            f"{statistics.median(no_pyc):.1f}",
            f"{statistics.median(no_pyc) / jwt_median:.2f}x",
        ],
        [
            "layer copy, compiled (`make build`)",
            f"{statistics.median(with_pyc):.1f}",
            f"{statistics.median(with_pyc) / jwt_median:.2f}x",
        ],
    ]

    rows = [
        [
            "`import jwt` + load one public key (PyJWK)",
            f"{jwt_median:.1f}",
            spread(jwt_ms),
            f"{statistics.median(walls['jwt']):.0f}",
            "1.00x",
        ],
        [
            "**authorizer: import + first invocation**",
            f"{statistics.median(authorizer_ms):.1f}",
            spread(authorizer_ms),
            f"{statistics.median(walls['authorizer']):.0f}",
            f"{ratio:.2f}x",
        ],
        [
            "what the fast path never pays: `import boto3` + a DynamoDB client",
            f"{statistics.median(boto_ms):.1f}",
            spread(boto_ms),
            "",
            f"{statistics.median(boto_ms) / jwt_median:.2f}x",
        ],
    ]
    client_stack = [name for name in loaded if name in ("boto3", "botocore.session")]
    loaded_note = (
        "boto3/botocore client stack "
        + ("NOT loaded" if not client_stack else "LOADED: " + ", ".join(client_stack))
        + "; PyJWT "
        + ("loaded" if "jwt" in loaded else "not loaded")
    )
    if "botocore" in loaded:
        loaded_note += " (top-level botocore only: Powertools imports it for a user-agent hook)"
    lines = [
        "### Cold start (a fresh interpreter per run)",
        "",
        "The authorizer as template.yaml deploys it: `PUBLIC_JWKS` empty, so its first request "
        "reads the public JWKS parameter (one signed GetParameter over loopback to moto's "
        "server: an in-region SSM call adds a few ms more).",
        "",
        f"{runs} runs of each, alternating; ms from the first line of the process to the answer "
        "(median, IQR), and the whole process including the interpreter's start-up.",
        "",
        table(["run", "ms", "IQR", "process ms", "ratio"], rows),
        "",
        f"Loaded by the authorizer's cold start: {loaded_note}.",
        "",
        f"Bytecode: the same cold start from a copy of the {files} modules it loads, laid out "
        "like the layer (median of a few runs):",
        "",
        table(["layer", "ms", "ratio to the jwt floor"], bytecode_rows),
    ]
    budgets = [
        Budget(
            "3a",
            "authorizer cold start as deployed (import, key read, first answer) ÷ "
            "(`import jwt` + load key)",
            ratio,
            1.5,
        ),
        Budget(
            "3b",
            "boto3/botocore client modules loaded by that cold start",
            float(len(client_stack)),
            0,
            unit="calls",
            note="boto3 not imported" if not client_stack else "LOADED: " + ", ".join(client_stack),
        ),
    ]
    return lines, budgets
