"""Package rules that hold across modules: the layer order (every import of the layer and the
functions, checked by AST), and that the pure core and the authorizer's fast path never load
boto3 or botocore at import time (each AWS backend imports boto3 on its first call)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

# Every package a handler or the authorizer imports on its fast path.
PACKAGES = (
    "tokencore",
    "tokencore.keys",
    "tokencore.sessions",
    "tokencore.users",
    "tokencore.ratelimit",
    "tokencore.tokens",
    "tokencore.policy",
)


def test_importing_the_packages_loads_neither_boto3_nor_botocore() -> None:
    # Checking the top-level names is enough: importing a submodule imports its package first.
    code = (
        f"import {', '.join(PACKAGES)}\n"
        "import sys\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_building_the_aws_backends_loads_neither_boto3_nor_botocore() -> None:
    """Construction is free too: a container may build its stores and key sources at init."""
    code = (
        "import sys\n"
        "from tokencore.clock import SYSTEM_CLOCK\n"
        "from tokencore.config import Settings\n"
        "from tokencore.keys import KmsKeySource, KmsSigner, SecretsManagerKeySource\n"
        "from tokencore.keys import SsmJwksSource\n"
        "from tokencore.ratelimit import DynamoDBRateLimiter\n"
        "from tokencore.sessions import DynamoDBSessionStore\n"
        "from tokencore.users import DynamoDBUserStore\n"
        "DynamoDBSessionStore('t', Settings())\n"
        "DynamoDBUserStore('t', SYSTEM_CLOCK)\n"
        "DynamoDBRateLimiter('t', SYSTEM_CLOCK)\n"
        "SecretsManagerKeySource('s', 'access')\n"
        "KmsSigner('alias/k', 'ES256')\n"
        "KmsKeySource('alias/k')\n"
        "SsmJwksSource('/p')\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_authorizer_loads_neither_pyjwt_nor_the_serialization_module() -> None:
    """Most of a PyJWT-based verifier's cold start is ``import jwt`` (X.509, the JWKS client,
    http.client, ssl) and cryptography's serialization module; the authorizer verifies with
    cryptography's primitives and needs neither (``make bench``, budget 3)."""
    code = (
        "import sys\n"
        "import functions.authorizer.app\n"
        "heavy = ('jwt', 'cryptography.hazmat.primitives.serialization', 'boto3', "
        "'botocore.session', 'tokencore.sessions')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr


REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "layers" / "tokencore" / "tokencore"

# The layer order, lowest first (docs/architecture.md draws it). A module may import its own
# layer and the layers below, never one above; lazy imports inside functions and imports under
# TYPE_CHECKING count too. Each name is a module or package directly under tokencore/, or
# "functions" (every handler). A new module must be placed here before its first import.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("the error tree", frozenset({"tokencore", "errors"})),
    ("JOSE", frozenset({"jose"})),
    (
        "foundation",
        frozenset(
            {"config", "clock", "wire", "paths", "awsclient", "awshttp", "store", "audit", "emf"}
            | {"grant", "revocations"}
        ),
    ),
    ("keys and tokens", frozenset({"keys", "tokens"})),
    (
        "stores and parts",
        frozenset(
            {
                "sessions",
                "users",
                "ratelimit",
                "policy",
                "claimscache",
                "authcontext",
                "sessioncheck",
                "http",
            }
        ),
    ),
    ("flows", frozenset({"service", "sessionservice", "authz"})),
    ("operations", frozenset({"ops"})),
    ("composition root", frozenset({"runtime"})),
    ("entry points", frozenset({"cli", "functions"})),
)
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
# Peers of one layer that still never import each other: both build on jose/ alone.
APART = frozenset({("keys", "tokens"), ("tokens", "keys")})
# What ships never imports the local stack, the tests or the benchmarks.
OUTSIDE = ("devserver", "tests", "bench")


def _unit_of(path: Path) -> str:
    if path.is_relative_to(LAYER):
        parts = path.relative_to(LAYER).parts
        return parts[0] if len(parts) > 1 else path.stem.replace("__init__", "tokencore")
    return "functions"


def _targets(node: ast.AST) -> list[str]:
    """The units (or outside roots) one import statement reaches."""
    if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
        if node.module == "tokencore":  # from tokencore import wire
            return [alias.name if alias.name in RANK else "tokencore" for alias in node.names]
        modules = [node.module]
    else:
        return []
    found = []
    for module in modules:
        root, _, rest = module.partition(".")
        if root == "tokencore":
            found.append(rest.partition(".")[0] or "tokencore")
        elif root in (*OUTSIDE, "functions"):
            found.append(root)
    return found


def layer_violations(unit: str, source: str) -> list[str]:
    """Every import in ``source`` (a module of ``unit``) that breaks the layer order."""
    if unit not in RANK:
        return [f"{unit} is not placed in a layer (tests/unit/test_imports.py LAYERS)"]
    found = []
    for node in ast.walk(ast.parse(source)):
        for target in _targets(node):
            if target in OUTSIDE:
                found.append(f"{unit} imports {target}/, which never ships")
            elif target not in RANK:
                found.append(f"{unit} imports {target}, which is not placed in a layer")
            elif RANK[target] > RANK[unit]:
                above = LAYERS[RANK[target]][0]
                found.append(f"{unit} imports {target} ({above}, a layer above it)")
            elif (unit, target) in APART:
                found.append(f"{unit} imports {target}: they build on jose/, never on each other")
    return found


def _shipped_files() -> list[Path]:
    return sorted([*LAYER.rglob("*.py"), *(REPO / "functions").rglob("*.py")])


def test_every_shipped_module_keeps_the_layer_order() -> None:
    files = _shipped_files()
    assert len(files) > 50
    offenders = [
        f"{path.relative_to(REPO)}: {problem}"
        for path in files
        for problem in layer_violations(_unit_of(path), path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "\n".join(offenders)


def test_every_layer_is_in_use() -> None:
    """No stale entry: each name in LAYERS is a module or package that exists."""
    present = {_unit_of(path) for path in _shipped_files()}
    assert present == set(RANK), set(RANK) ^ present


@pytest.mark.parametrize(
    ("unit", "source", "complaint"),
    [
        ("jose", "from tokencore.keys import KeySet", "jose imports keys"),
        ("jose", "import tokencore.config", "jose imports config"),
        ("keys", "from tokencore.tokens.mint import mint_access_token", "keys imports tokens"),
        ("tokens", "def f():\n    from tokencore.keys import jwk\n", "tokens imports keys"),
        ("keys", "from tokencore.sessions import SessionStore", "keys imports sessions"),
        ("sessions", "from tokencore.service import AuthService", "sessions imports service"),
        ("users", "from tokencore.sessionservice import SessionService", "users imports"),
        ("service", "from tokencore.ops.rotation import SecretsManagerRotation", "service imp"),
        (
            "sessionservice",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from tokencore.runtime import Runtime\n",
            "sessionservice imports runtime",
        ),
        ("ops", "from tokencore.runtime import get_runtime", "ops imports runtime"),
        ("runtime", "from functions.me import app", "runtime imports functions"),
        ("runtime", "from tokencore import cli", "runtime imports cli"),
        ("http", "from tokencore import runtime", "http imports runtime"),
        ("http", "from tokencore.service import AuthService", "http imports service"),
        ("keys", "from devserver.clock import DevClock", "keys imports devserver/"),
        ("users", "import tests.unit.test_imports", "users imports tests/"),
        ("functions", "import devserver.server", "functions imports devserver/"),
        ("authz", "from bench import common", "authz imports bench/"),
        ("newthing", "", "newthing is not placed in a layer"),
        ("service", "from tokencore.newthing import x", "service imports newthing, which is not"),
    ],
)
def test_each_rule_refuses_a_violating_import(unit: str, source: str, complaint: str) -> None:
    problems = layer_violations(unit, source)
    assert any(problem.startswith(complaint) for problem in problems), problems


def test_an_import_the_order_allows_is_not_refused() -> None:
    source = (
        "from tokencore import wire\n"
        "from tokencore.errors import Rejected\n"
        "from tokencore.keys import KeySet\n"
        "from tokencore.sessions import SessionStore\n"
        "import hashlib\n"
    )
    assert layer_violations("service", source) == []


def test_the_authorizer_loads_no_http_edge_and_no_password_hashing() -> None:
    """The wire parser and the context type it shares with the routes keep the authorizer's
    cold start light: no HTTP edge (Powertools' event handler), no Argon2, no user store."""
    code = (
        "import sys\n"
        "import functions.authorizer.app\n"
        "heavy = ('tokencore.http', 'aws_lambda_powertools.event_handler', 'argon2', "
        "'tokencore.users', 'tokencore.service', 'tokencore.sessionservice')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr


def test_the_functions_load_the_xray_sdk_only_when_the_tracer_is_turned_on() -> None:
    """The Powertools Tracer imports the X-Ray SDK (and botocore's client stack) when built:
    about 200 ms of a cold start. Lambda's active tracing needs none of it."""
    code = (
        "import sys\n"
        "import functions.issuer.app, functions.refresher.app, functions.revoker.app\n"
        "import functions.me.app\n"
        "print(sorted(m for m in ('aws_xray_sdk', 'botocore.client') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "t"}
    loaded = {}
    for setting in ("", "false"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=root,
            env={**env, "POWERTOOLS_TRACE_DISABLED": setting},
        )
        assert result.returncode == 0, result.stderr
        loaded[setting] = result.stdout.strip()
    assert loaded[""] == "[]"
    assert "aws_xray_sdk" in loaded["false"]
