"""What every benchmark shares: the fixture (one RS256 key, tokens, API Gateway events), the
side-by-side timer, and the tables.

Timing: contenders run in interleaved rounds (the order shuffled each round) over the same
inputs, so a noisy neighbour slows every contender of a round alike; each figure is the median
over rounds, and each ratio is the median of the per-round ratios. The garbage collector is
off while a batch runs (as timeit does), for every contender.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO_ROOT / "events"
ISSUER = "https://auth.example.com"
AUDIENCE = "tokencore-api"
SERVICE = "tokencore-authorizer"
PUBLIC_JWKS_PARAMETER = "/tokencore/bench/public-jwks"


# --- the fixture --------------------------------------------------------------------------------


@dataclass
class Fixture:
    """One RS256 key (2048 bits, as the default deployment signs), its public JWKS, and a pool
    of distinct access tokens with their HTTP API authorizer events."""

    signer: Any
    public_key: Any
    public_jwk: dict[str, Any]
    jwks_json: str
    fingerprint: str
    fingerprint_hash: str
    tokens: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def mint(self, count: int, now: float | None = None, ttl_seconds: int = 900) -> list[str]:
        from tokencore.tokens import AccessClaims, mint_access_token, new_token_id

        issued = time.time() if now is None else now
        return [
            mint_access_token(
                self.signer,
                AccessClaims(
                    issuer=ISSUER,
                    audience=AUDIENCE,
                    subject="6a1f2c3e-0c7d-4b8e-9f10-111213141516",
                    session_id="Qm9uZGVkU2Vzc2lvbklkMDE",
                    token_id=new_token_id(),
                    roles=("user",),
                    email="alice@example.com",
                    issued_at=int(issued),
                    expires_at=int(issued) + ttl_seconds,
                    fingerprint_hash=self.fingerprint_hash,
                ),
            ).token
            for _ in range(count)
        ]

    def event(self, token: str, name: str = "http-valid") -> dict[str, Any]:
        text = (EVENTS_DIR / "authorizer" / f"{name}.json").read_text(encoding="utf-8")
        for placeholder, value in {
            "access_token": token,
            "fingerprint": self.fingerprint,
            "session_id": "Qm9uZGVkU2Vzc2lvbklkMDE",
            "device_id": "",
        }.items():
            text = text.replace("{{" + placeholder + "}}", value)
        event: dict[str, Any] = json.loads(text)
        return event


def make_fixture(pool: int = 0, alg: str = "RS256") -> Fixture:
    from tokencore.keys import KeySet, generate_key, jwks_document, public_jwk
    from tokencore.tokens import new_fingerprint

    entry = generate_key(alg)
    key_set = KeySet([entry], "access")
    (verification_key,) = key_set.verification_keys()
    fingerprint, fingerprint_hash = new_fingerprint()
    fixture = Fixture(
        signer=key_set.signer(),
        public_key=verification_key.key,
        public_jwk=public_jwk(verification_key),
        jwks_json=json.dumps(jwks_document([verification_key])),
        fingerprint=fingerprint,
        fingerprint_hash=fingerprint_hash,
    )
    if pool:
        fixture.tokens = fixture.mint(pool)
        fixture.events = [fixture.event(token) for token in fixture.tokens]
    return fixture


def authorizer_environment(fixture: Fixture, aws_endpoint: str) -> dict[str, str]:
    """The authorizer's settings as the template gives them, keys from PUBLIC_JWKS, the fast
    path only (no sampled session checks), and ``aws_endpoint`` (a LocalAws: the revocation
    list, which every container reads at its first request and then every
    REVOCATION_PROPAGATION_SECONDS in the background)."""
    return {
        "TOKEN_ISSUER": ISSUER,
        "TOKEN_AUDIENCE": AUDIENCE,
        "PUBLIC_JWKS": fixture.jwks_json,
        "SESSION_CHECK_SAMPLE_RATE": "0",
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": "tokencore",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def deployed_authorizer_environment(fixture: Fixture, aws_endpoint: str) -> dict[str, str]:
    """The authorizer as template.yaml deploys it by default: PUBLIC_JWKS empty, so the keys
    come from the public JWKS parameter, read over ``aws_endpoint`` (a local moto server
    holding ``fixture``'s JWKS) with the credentials Lambda puts in the environment."""
    return {
        **authorizer_environment(fixture, aws_endpoint),
        "PUBLIC_JWKS": "",
        "PUBLIC_JWKS_PARAMETER": PUBLIC_JWKS_PARAMETER,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_SESSION_TOKEN": "bench",
    }


class LocalAws:
    """moto's server on 127.0.0.1 holding the fixture's public JWKS parameter and an empty
    sessions table (the bench's stand-in for SSM and DynamoDB: the same protocols, a loopback
    round trip instead of an in-region one). Its own process: a server thread in the measured
    process would take the GIL from it."""

    def __init__(self, fixture: Fixture, *, sessions_table: bool = True) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                self.put_jwks(fixture.jwks_json)
                break
            except Exception:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.2)
        if sessions_table:  # else the caller creates the tables (coldstart: as devserver does)
            self._create_sessions_table()

    def put_jwks(self, document: str) -> None:
        from tokencore.awshttp import AwsJsonClient, Credentials

        client = AwsJsonClient(
            "ssm",
            "AmazonSSM",
            region="us-east-1",
            endpoint=self.url,
            credentials=Credentials("bench", "bench"),
            timeout_seconds=60,  # moto loads its SSM backend on the first call
        )
        payload = {"Name": PUBLIC_JWKS_PARAMETER, "Value": document, "Type": "String"}
        client.call("PutParameter", {**payload, "Overwrite": True})
        client.close()

    def _create_sessions_table(self) -> None:
        """The table the authorizer's revocation list is read from (its key schema only: the
        list reads items by key)."""
        from tokencore.awshttp import AwsJsonClient, Credentials
        from tokencore.config import Settings

        client = AwsJsonClient(
            "dynamodb",
            "DynamoDB_20120810",
            json_version="1.0",
            region="us-east-1",
            endpoint=self.url,
            credentials=Credentials("bench", "bench"),
            timeout_seconds=60,
        )
        client.call(
            "CreateTable",
            {
                "TableName": Settings.from_env({}).sessions_table_name,
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
        client.close()

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except Exception:
            self._process.kill()
            raise


@contextlib.contextmanager
def in_process_authorizer(fixture: Fixture) -> Iterator[str]:
    """A LocalAws for ``fixture`` (its URL yielded) around a run that sets this process's
    environment and Runtime; both are put back afterwards."""
    saved = dict(os.environ)
    aws = LocalAws(fixture)
    try:
        yield aws.url
    finally:
        aws.stop()
        os.environ.clear()
        os.environ.update(saved)
        from tokencore.config import reset_settings
        from tokencore.runtime import set_runtime

        set_runtime(None)
        reset_settings()


def hermetic_environment(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would change what a child measures:
    AWS and Powertools variables (an endpoint or real credentials) and every tokencore
    setting (the child gets the template's defaults plus ``extra``)."""
    import dataclasses

    from tokencore.config import Settings

    settings = {field.name.upper() for field in dataclasses.fields(Settings)}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_", "MOTO_", "BENCH_")) and name not in settings
    }
    env.update(extra)
    return env


class LambdaContext:
    function_name = SERVICE
    aws_request_id = "5e0f8c1a-0000-4000-8000-000000000001"


# --- timing -------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    # Called once per round with the batch size; returns nothing. Any per-batch setup it
    # needs (clearing a cache) happens in ``prepare``, outside the timed region.
    run: Callable[[int], None]
    prepare: Callable[[], None] | None = None


@dataclass
class Timing:
    name: str
    per_call_us: float
    ratios: dict[str, float]


def side_by_side(
    contenders: Sequence[Contender], *, rounds: int, batch: int, seed: int = 1
) -> dict[str, list[float]]:
    """Per-call microseconds of each contender, one figure per round."""
    order = list(contenders)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for contender in order:  # warm-up: caches, branch predictors, lazy imports
        if contender.prepare:
            contender.prepare()
        contender.run(max(1, batch // 10))
    for _ in range(rounds):
        rng.shuffle(order)
        for contender in order:
            if contender.prepare:
                contender.prepare()
            enabled = gc.isenabled()
            gc.disable()
            try:
                start = time.perf_counter_ns()
                contender.run(batch)
                elapsed = time.perf_counter_ns() - start
            finally:
                if enabled:
                    gc.enable()
            samples[contender.name].append(elapsed / batch / 1000)
    return samples


def median_ratio(samples: dict[str, list[float]], name: str, reference: str) -> float:
    return statistics.median(a / b for a, b in zip(samples[name], samples[reference], strict=True))


def spread(values: Sequence[float]) -> str:
    """The interquartile range, as a noise indicator."""
    if len(values) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.1f}-{q3:.1f}"


# --- results and tables --------------------------------------------------------------------------


@dataclass
class Budget:
    """One budget of the issue: a measured figure against its limit."""

    number: str
    what: str
    measured: float
    limit: float
    unit: str = "x"
    lower_is_better: bool = True
    note: str = ""
    floor: float | None = None  # a window: floor ≤ measured ≤ limit

    @property
    def passed(self) -> bool:
        if self.floor is not None:
            return self.floor <= self.measured <= self.limit
        return self.measured <= self.limit if self.lower_is_better else self.measured >= self.limit

    def row(self) -> list[str]:
        fmt = _fmt(self.measured, self.unit)
        limit = ("≤ " if self.lower_is_better else "≥ ") + _fmt(self.limit, self.unit)
        if self.floor is not None:
            limit = f"{_fmt(self.floor, self.unit)} to {_fmt(self.limit, self.unit)}"
        return [self.number, self.what, fmt, limit, "pass" if self.passed else "MISS", self.note]


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "calls":
        return f"{value:g}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:g} {unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (the README shows these as printed)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def machine() -> str:
    import cryptography

    try:
        one, five, fifteen = os.getloadavg()
        load = f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        load = "load average unknown"
    return (
        f"Python {platform.python_version()} ({platform.machine()}), cryptography "
        f"{cryptography.__version__}, {os.cpu_count()} CPUs, {load}"
    )
