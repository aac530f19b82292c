"""Budget 6 (docs/capacity.md): a measured load run through the local stack, three designs; the
hybrid run's DynamoDB calls against what the design predicts for the same plan (a session read
per sensitive and per sampled request, three calls per refresh), so a call added or lost on
any path shows.

The same deterministic mix of requests goes through ``python -m devserver`` (template.yaml on
moto, the real authorizer and functions, loopback only) three times:

* ``hybrid``: this design as deployed (SESSION_CHECK_SAMPLE_RATE=0.1, the sensitive routes);
* ``sessions every request``: the same with SESSION_CHECK_SAMPLE_RATE=1;
* ``stateless JWT``: no session check in the authorizer at all (rate 0, no sensitive routes);
  refresh still rotates its session (that part of the design is not optional here).

Mix: 90% ordinary (``GET /me``), 5% sensitive (``GET /auth/sessions``, made sensitive for the
run: it is a read, so the run changes no state), 5% refresh (``POST /auth/refresh``, cookie),
spread over a pool of users who logged in before the run. Keys are in KMS (KEY_BACKEND=kms), so
signing calls show. AWS calls are counted on moto's side (its request recorder, started after
the warm-up, so per-container key loads are not in the figures); the local stack's own
once-per-request ListSecrets (its key watch, dev only) is left out.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

from bench.common import REPO_ROOT, Budget, hermetic_environment, table
from devserver.ready import wait_until_serving

# DynamoDB calls the sensitive route of the mix makes itself, after the authorizer: the
# revoker's session list (one Query on the sessions table's user index).
SENSITIVE_ROUTE_OWN_CALLS = 1

DEFAULT_SENSITIVE = (
    "GET /auth/sessions,POST /auth/sessions/revoke-all,DELETE /auth/sessions/*,* /admin/*"
)
DESIGNS: dict[str, dict[str, str]] = {
    "hybrid": {
        "SESSION_CHECK_SAMPLE_RATE": "0.1",
        "SENSITIVE_ROUTES": DEFAULT_SENSITIVE,
    },
    "sessions every request": {
        "SESSION_CHECK_SAMPLE_RATE": "1",
        "SENSITIVE_ROUTES": DEFAULT_SENSITIVE,
    },
    "stateless JWT": {"SESSION_CHECK_SAMPLE_RATE": "0", "SENSITIVE_ROUTES": ","},
}
MIX = (("ordinary", 0.90), ("sensitive", 0.05), ("refresh", 0.05))
USERS = 20

# --- prices (us-east-1, on-demand, as published by AWS; see docs/capacity.md) -----------------
LAMBDA_ARM_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
DYNAMODB_RRU = 0.125 / 1e6  # after the November 2024 on-demand price cut
DYNAMODB_WRU = 0.625 / 1e6
KMS_REQUEST_RSA_2048 = 0.03 / 1e4
HTTP_API_REQUEST = 1.00 / 1e6  # first 300 million a month; the same in every design

# --- modelled durations (ms, billed in 1 ms steps) and sizes: stated assumptions --------------
AUTHORIZER_MEMORY_GB = 0.5
REFRESHER_MEMORY_GB = 0.5
FUNCTION_MS = 1.0  # a warm fast-path answer is well under 1 ms of CPU: billed 1 ms
DYNAMODB_CALL_MS = 5.0  # "single-digit milliseconds": a GetItem or UpdateItem in-region
KMS_SIGN_MS = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Client:
    """One browser: its access token, refresh cookie and fingerprint cookie."""

    access: str = ""
    refresh: str = ""
    fingerprint: str = ""

    def take(self, status: int, body: bytes, cookies: list[str]) -> None:
        if status == 200:
            self.access = json.loads(body)["access_token"]
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if name == "__Secure-rt" and value:
                self.refresh = value
            elif name == "__Host-fgp" and value:
                self.fingerprint = value


@dataclass
class Run:
    design: str
    requests: int
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)

    def per_thousand(self, call: str) -> float:
        return self.counts[call] * 1000 / self.requests


class Stack:
    def __init__(self, design: str, settings: dict[str, str], directory: Path) -> None:
        self.port, self.aws_port = _free_port(), _free_port()
        self.recording = directory / f"{design.replace(' ', '-')}.jsonl"
        env = hermetic_environment()
        env.update(
            {
                "PORT": str(self.port),
                "AWS_PORT": str(self.aws_port),
                "KEY_BACKEND": "kms",
                "REFRESH_RATE_LIMIT": "100000/60",  # the mix must never meet a 429
                "SEED_USERS": ";".join(f"load{i}:load-password-{i}" for i in range(USERS)),
                "MOTO_RECORDER_FILEPATH": str(self.recording),
                "PYTHONUNBUFFERED": "1",
                **settings,
            }
        )
        self.log = (directory / f"{design.replace(' ', '-')}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devserver"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.connection: HTTPConnection | None = None

    def wait_ready(self, deadline_seconds: float = 90) -> None:
        api_url = f"http://127.0.0.1:{self.port}"
        outcome = wait_until_serving(self.process, api_url, deadline_seconds)
        if outcome == "exited":
            raise RuntimeError("the local stack exited while starting")
        if outcome == "late":
            raise RuntimeError("the local stack did not start in time")

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, bytes, list[str]]:
        if self.connection is None:
            self.connection = HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (ConnectionError, OSError):
            self.connection.close()
            self.connection = None
            raise
        data = response.read()
        cookies = response.headers.get_all("Set-Cookie") or []
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
            self.connection = None
        return response.status, data, cookies

    def recorder(self, action: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.aws_port}/moto-api/recorder/{action}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _login(stack: Stack, index: int) -> Client:
    client = Client()
    body = json.dumps({"username": f"load{index}", "password": f"load-password-{index}"})
    status, data, cookies = stack.request(
        "POST", "/auth/login", {"Content-Type": "application/json"}, body.encode()
    )
    if status != 200:
        raise RuntimeError(f"login failed: {status} {data[:200]!r}")
    client.take(status, data, cookies)
    return client


def _send(stack: Stack, client: Client, kind: str) -> int:
    cookie = f"__Host-fgp={client.fingerprint}"
    if kind == "refresh":
        status, data, cookies = stack.request(
            "POST",
            "/auth/refresh",
            {"Cookie": f"__Secure-rt={client.refresh}; {cookie}", "X-Requested-With": "bench"},
        )
        client.take(status, data, cookies)
    else:
        path = "/me" if kind == "ordinary" else "/auth/sessions"
        status, _, _ = stack.request(
            "GET", path, {"Authorization": f"Bearer {client.access}", "Cookie": cookie}
        )
    return status


def _plan(requests: int, seed: int = 20261127) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    return [(i % USERS, rng.choices(kinds, weights)[0]) for i in range(requests)]


def _count(recording: Path) -> tuple[Counter[str], Counter[str]]:
    counted: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    if not recording.exists():
        return counted, excluded
    for line in recording.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        headers = {name.lower(): value for name, value in entry.get("headers", {}).items()}
        target = headers.get("x-amz-target", "")
        service, _, operation = target.rpartition(".")
        service = {
            "DynamoDB_20120810": "dynamodb",
            "TrentService": "kms",
            "secretsmanager": "secretsmanager",
            "AmazonSSM": "ssm",
        }.get(service, service or "other")
        call = f"{service}:{operation or entry.get('method', '?')}"
        if call == "secretsmanager:ListSecrets":
            excluded[call] += 1  # the local stack's key watch, once per HTTP request
        else:
            counted[call] += 1
    return counted, excluded


def measure(design: str, requests: int, directory: Path) -> Run:
    stack = Stack(design, DESIGNS[design], directory)
    try:
        stack.wait_ready()
        clients = [_login(stack, index) for index in range(USERS)]
        for client in clients:  # warm-up: every function and key set is loaded once
            for kind in ("ordinary", "sensitive", "refresh"):
                _send(stack, client, kind)
        stack.recorder("reset-recording")
        stack.recorder("start-recording")
        run = Run(design, requests)
        for user, kind in _plan(requests):
            status = _send(stack, clients[user], kind)
            run.statuses[f"{kind} {status}"] += 1
        stack.recorder("stop-recording")
        run.counts, run.excluded = _count(stack.recording)
    finally:
        stack.stop()
    bad = {key: n for key, n in run.statuses.items() if not key.endswith((" 200", " 204"))}
    if bad:
        raise RuntimeError(f"{design}: requests failed: {bad}")
    return run


# --- the cost model ------------------------------------------------------------------------------


def _units(run: Run) -> tuple[float, float]:
    """Request units per 1,000 requests: every item of ours is under 1 KB (1 WRU per write,
    1 RRU per strongly consistent read); a session write also writes the by_user index
    (ProjectionType ALL: +1 WRU); a Query reads the user's few live sessions from the index
    (eventually consistent, under 4 KB: 0.5 RRU); a BatchGetItem reads two items (the
    authorizer's session check: the session and its user; a revocation-list refresh: the
    current minute's bucket, and the last one until it is sealed)."""
    reads = (
        run.per_thousand("dynamodb:GetItem")
        + 0.5 * run.per_thousand("dynamodb:Query")
        + 2 * run.per_thousand("dynamodb:BatchGetItem")
    )
    updates = run.per_thousand("dynamodb:UpdateItem") + run.per_thousand("dynamodb:PutItem")
    # Of the updates, the rate-limit windows touch no index; the rotations do (one per refresh).
    session_writes = run.per_thousand("dynamodb:UpdateItem") / 2
    writes = updates + session_writes
    return reads, writes


def cost_per_million(run: Run) -> dict[str, float]:
    """Lambda, DynamoDB and KMS dollars per million requests of the measured mix. Shares come
    from the run itself: every refresh signs once (kms:Sign); every other request went through
    the authorizer, whose reads (a session check, a revocation-list refresh) are its
    BatchGetItems."""
    refreshes = run.per_thousand("kms:Sign") / 1000
    protected = 1 - refreshes
    session_reads = run.per_thousand("dynamodb:BatchGetItem") / 1000
    authorizer_ms = FUNCTION_MS + (session_reads / protected) * DYNAMODB_CALL_MS
    refresher_ms = FUNCTION_MS + 3 * DYNAMODB_CALL_MS + KMS_SIGN_MS
    lambda_requests = 1e6 * LAMBDA_REQUEST
    lambda_duration = (
        1e6
        * LAMBDA_ARM_GB_SECOND
        / 1000
        * (
            protected * authorizer_ms * AUTHORIZER_MEMORY_GB
            + refreshes * refresher_ms * REFRESHER_MEMORY_GB
        )
    )
    reads, writes = _units(run)
    return {
        "lambda": lambda_requests + lambda_duration,
        "dynamodb": 1000 * (reads * DYNAMODB_RRU + writes * DYNAMODB_WRU),
        "kms": 1000 * run.per_thousand("kms:Sign") * KMS_REQUEST_RSA_2048,
        "authorizer_ms": authorizer_ms,
        "session_reads": session_reads,
        "http_api": 1e6 * HTTP_API_REQUEST,
    }


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    requests = 600 if quick else 2000
    runs: dict[str, Run] = {}
    # The three stacks run side by side: a request through the local stack waits far more
    # than it computes (moto, loopback round trips), so this divides the wall time by three.
    with (
        tempfile.TemporaryDirectory(prefix="tokencore-capacity-") as tmp,
        ThreadPoolExecutor(max_workers=len(DESIGNS)) as pool,
    ):
        futures = {design: pool.submit(measure, design, requests, Path(tmp)) for design in DESIGNS}
        for design, future in futures.items():
            runs[design] = future.result()
    calls = sorted({call for r in runs.values() for call in r.counts})
    call_rows = [[call] + [f"{runs[d].per_thousand(call):.0f}" for d in DESIGNS] for call in calls]
    totals = []
    for service in ("dynamodb", "kms"):
        totals.append(
            [f"**{service} total**"]
            + [
                f"**{sum(runs[d].per_thousand(c) for c in calls if c.startswith(service)):.0f}**"
                for d in DESIGNS
            ]
        )
    costs = {design: cost_per_million(runs[design]) for design in DESIGNS}
    cost_rows = []
    for label, key in (
        ("Lambda (requests + GB-s)", "lambda"),
        ("DynamoDB", "dynamodb"),
        ("KMS", "kms"),
    ):
        cost_rows.append([label] + [f"${costs[d][key]:.3f}" for d in DESIGNS])
    cost_rows.append(
        ["**total**"]
        + [
            f"**${costs[d]['lambda'] + costs[d]['dynamodb'] + costs[d]['kms']:.3f}**"
            for d in DESIGNS
        ]
    )
    cost_rows.append(
        ["(HTTP API, same in all)"] + [f"${costs[d]['http_api']:.2f}" for d in DESIGNS]
    )
    excluded = sum(r.excluded["secretsmanager:ListSecrets"] for r in runs.values())
    lines = [
        "### Capacity: calls per 1,000 requests through the local stack",
        "",
        f"{requests:,} requests per design, mix 90% `GET /me`, 5% `GET /auth/sessions` "
        f"(sensitive), 5% `POST /auth/refresh`, {USERS} users, KMS keys; counted by moto"
        + (f" ({excluded:,} dev-only ListSecrets left out)." if excluded else "."),
        "",
        table(["AWS call", *DESIGNS], call_rows + totals),
        "",
        "Cost per million requests of this mix (prices and modelled durations: docs/capacity.md):",
        "",
        table(["", *DESIGNS], cost_rows),
    ]

    def dynamodb(run: Run) -> float:
        return sum(count for call, count in run.counts.items() if call.startswith("dynamodb:"))

    hybrid, every = runs["hybrid"], runs["sessions every request"]

    def total(design: str) -> float:
        return sum(costs[design][key] for key in ("lambda", "dynamodb", "kms"))

    # What the design predicts for this very plan: the authorizer's session read per sensitive
    # request and per sampled ordinary one (SESSION_CHECK_SAMPLE_RATE), plus the sensitive
    # route's own Query (GET /auth/sessions lists the caller's sessions), and three calls per
    # refresh (README). GET /me answers from the authorizer's context alone.
    planned = Counter(kind for _, kind in _plan(requests))
    rate = float(DESIGNS["hybrid"]["SESSION_CHECK_SAMPLE_RATE"])
    expected = (
        planned["ordinary"] * rate
        + planned["sensitive"] * (1 + SENSITIVE_ROUTE_OWN_CALLS)
        + planned["refresh"] * 3
    )
    measured = dynamodb(hybrid)
    budgets = [
        Budget(
            "6",
            "DynamoDB calls of the hybrid mix, measured ÷ the design's expectation",
            measured / expected,
            1.10,
            floor=0.90,
            note=f"{1000 * measured / hybrid.requests:.0f} vs {1000 * expected / requests:.0f} "
            f"per 1,000 (sampled reads: ±7% at 2,000 requests); every request: "
            f"{1000 * dynamodb(every) / every.requests:.0f}; "
            f"${total('hybrid'):.3f} vs ${total('sessions every request'):.3f} per million",
        )
    ]
    return lines, budgets
