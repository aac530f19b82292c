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

Budget 3c: the issuer, refresher and revoker imported the same way, each with the environment
template.yaml gives it, against ``import boto3`` plus a DynamoDB client. Then the first login's
time split (no budget): a cold issuer answering events/issuer/login-valid.json against moto's
server seeded with the key sets and one user (coldstart_child.py, ``login``).
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
    aws = LocalAws(fixture, sessions_table=False)
    try:
        # First: the tables as the local stack creates them (the authorizer's cold start reads
        # the revocation list from the sessions table).
        environments = _stack_environments(aws.url)
        lines, budgets = _run_deployed(quick, fixture, aws.url)
        function_lines, function_budgets = _run_functions(quick, environments)
        login_lines = _login_split(quick, environments["issuer"])
    finally:
        aws.stop()
    return lines + function_lines + login_lines, budgets + function_budgets


# The functions of budget 3c, by package under functions/, with their template logical ids.
FUNCTIONS = {
    "issuer": "IssuerFunction",
    "refresher": "RefresherFunction",
    "revoker": "RevokerFunction",
}


def _stack_environments(aws_endpoint: str) -> dict[str, dict[str, str]]:
    """Each function's environment as template.yaml gives it (Globals merged with its own
    variables, parameters at their defaults: tracing off, the Tracer not built), with the
    resources it names created in the local AWS server the way the local stack (devserver)
    creates them, plus what Lambda itself sets: the function's name and memory, the region
    and the role's credentials."""
    import boto3

    from devserver.stack import LocalStack
    from devserver.template import load_template

    boto_session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )

    class LocalSession:  # what LocalStack asks of a session: clients, here of the local server
        def client(self, service: str) -> Any:
            return boto_session.client(service, endpoint_url=aws_endpoint)

    stack = LocalStack(load_template(), {}, create=True, session=LocalSession())
    stack.physical("SessionsTable")
    environments: dict[str, dict[str, str]] = {}
    for name, logical_id in FUNCTIONS.items():
        spec = stack.function_spec(logical_id)
        environments[name] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            **stack.function_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "BENCH_FUNCTION": name,
        }
    return environments


def _run_functions(
    quick: bool, environments: dict[str, dict[str, str]]
) -> tuple[list[str], list[Budget]]:
    """Budget 3c: each function's cold import against ``import boto3`` + a DynamoDB client,
    alternating in fresh interpreters, the median of the per-pair ratios."""
    pairs = 5 if quick else 11
    rows: list[list[str]] = []
    ratios: dict[str, float] = {}
    boto_all: list[float] = []
    for name, env in environments.items():
        function_ms: list[float] = []
        boto_ms: list[float] = []
        loaded: list[str] = []
        for index in range(pairs):
            modes = ("function", "boto3") if index % 2 == 0 else ("boto3", "function")
            for mode in modes:
                report, _ = _run(mode, env, REPO_ROOT)
                (function_ms if mode == "function" else boto_ms).append(report["ms"])
                if mode == "function":
                    loaded = report["loaded"]
        ratios[name] = statistics.median(f / b for f, b in zip(function_ms, boto_ms, strict=True))
        boto_all.extend(boto_ms)
        rows.append(
            [
                f"`from functions.{name} import app`",
                f"{statistics.median(function_ms):.1f}",
                spread(function_ms),
                f"{statistics.median(boto_ms):.1f}",
                f"{ratios[name]:.2f}x",
                "yes" if "boto3" in loaded else "no",
            ]
        )
    # Tracing stays available: the issuer with the Powertools Tracer turned on (no budget;
    # what turning it on costs a cold start).
    traced_env = {**environments["issuer"], "POWERTOOLS_TRACE_DISABLED": "false"}
    traced_ms = [_run("function", traced_env, REPO_ROOT)[0]["ms"] for _ in range(3 if quick else 5)]
    boto_median = statistics.median(boto_all)
    rows.append(
        [
            "issuer with the Tracer on (`POWERTOOLS_TRACE_DISABLED=false`; no budget)",
            f"{statistics.median(traced_ms):.1f}",
            spread(traced_ms),
            f"{boto_median:.1f}",
            f"{statistics.median(traced_ms) / boto_median:.2f}x",
            "",
        ]
    )
    worst = max(ratios, key=ratios.__getitem__)
    lines = [
        "",
        "The issuer, refresher and revoker: each one's cold import with the environment "
        "template.yaml gives it (tracing off, the default: Lambda's active tracing records "
        f"the invocation without the Tracer) against `import boto3` + a DynamoDB client; {pairs} "
        "pairs each, alternating, ratio = median of the per-pair ratios.",
        "",
        table(
            ["import", "ms", "IQR", "boto3 + client ms", "ratio", "boto3 imported"],
            rows,
        ),
    ]
    budget = Budget(
        "3c",
        "issuer/refresher/revoker cold import ÷ (`import boto3` + a DynamoDB client), the worst",
        ratios[worst],
        1.2,
        note=", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()),
    )
    return lines, [budget]


def _login_split(quick: bool, issuer_env: dict[str, str]) -> list[str]:
    """The first login of a cold issuer (events/issuer/login-valid.json, the real handler)
    against the local AWS server, split into its parts; median of a few cold runs."""
    event = (REPO_ROOT / "events" / "issuer" / "login-valid.json").read_text(encoding="utf-8")
    # events/issuer/login-valid.json logs in as the local stack's demo user.
    from devserver.seed import DEMO_PASSWORD, DEMO_USERNAME

    seed_env = {**issuer_env, "BENCH_USERNAME": DEMO_USERNAME, "BENCH_PASSWORD": DEMO_PASSWORD}
    _run("seed", seed_env, REPO_ROOT)
    # Under the login rate limit (10 a username in 5 minutes) at its default.
    runs = 3 if quick else 7
    env = {**issuer_env, "BENCH_EVENT": event}
    reports = [_run("login", env, REPO_ROOT)[0] for _ in range(runs)]
    parts = ("aws client set-up", "key load", "argon2", "aws calls")

    def total(report: dict[str, Any]) -> float:
        return float(report["ms"]) - float(report["instrument"])

    def rest(report: dict[str, Any]) -> float:
        spent = sum(float(report["parts"].get(part, 0.0)) for part in parts)
        return total(report) - float(report["import"]) - spent

    def median_of(value: Any) -> str:
        return f"{statistics.median(value(report) for report in reports):.1f}"

    # The run whose total is the median, whole: its parts add up to its total.
    middle = sorted(reports, key=total)[len(reports) // 2]
    calls = middle["calls"]
    labels = {
        "aws client set-up": "AWS client set-up (`import boto3`, the clients)",
        "key load": "key load (parsing the key sets; their reads are AWS calls)",
        "argon2": "Argon2id verify (the production parameters)",
        "aws calls": f"AWS calls ({len(calls)}: {', '.join(calls)})",
    }
    rows = [
        [
            "import of `functions.issuer.app`",
            f"{middle['import']:.1f}",
            median_of(lambda r: r["import"]),
        ]
    ]
    rows += [
        [
            labels[part],
            f"{middle['parts'].get(part, 0.0):.1f}",
            median_of(lambda r, part=part: r["parts"].get(part, 0.0)),
        ]
        for part in parts
    ]
    rows += [
        [
            "the rest (routing, the service, signing, the response)",
            f"{rest(middle):.1f}",
            median_of(rest),
        ],
        ["**the first login, cold: total**", f"{total(middle):.1f}", median_of(total)],
    ]
    return [
        "",
        "The first login's time split: a fresh interpreter imports the issuer and answers "
        "events/issuer/login-valid.json (the real handler and event) against the local AWS "
        "server (moto, over loopback: an in-region call costs a few ms more), the stack seeded "
        f"as the local stack seeds it; {runs} cold runs, ms. Each part counts once (the reads "
        "inside the key load are AWS calls): the median run's parts add up to its total.",
        "",
        table(["part", "median run", f"median of {runs}"], rows),
    ]


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
