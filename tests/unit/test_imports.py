"""Package rules that hold across modules: the pure core and the authorizer's fast path never
load boto3 or botocore at import time (each AWS backend imports boto3 on its first call)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
        "from tokencore.clock import ManualClock\n"
        "from tokencore.config import Settings\n"
        "from tokencore.keys import KmsKeySource, KmsSigner, SecretsManagerKeySource\n"
        "from tokencore.keys import SsmJwksSource\n"
        "from tokencore.ratelimit import DynamoDBRateLimiter\n"
        "from tokencore.sessions import DynamoDBSessionStore\n"
        "from tokencore.users import DynamoDBUserStore\n"
        "DynamoDBSessionStore('t', Settings())\n"
        "DynamoDBUserStore('t', ManualClock())\n"
        "DynamoDBRateLimiter('t', ManualClock())\n"
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


LAYER = Path(__file__).resolve().parents[2] / "layers" / "tokencore" / "tokencore"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_http_edge_imports_neither_the_composition_root_nor_the_flows() -> None:
    """http/ is handed what it needs by the function modules: Settings through a provider,
    plain types (``tokencore.grant``, ``tokencore.authcontext``) from below the flows."""
    forbidden = ("tokencore.runtime", "tokencore.service", "tokencore.sessionservice")
    offenders = {
        f"{path.name}: {name}"
        for path in sorted((LAYER / "http").glob("*.py"))
        for name in _imported_modules(path)
        if name.startswith(forbidden)
    }
    assert not offenders, offenders


def test_the_layers_below_the_root_never_import_it() -> None:
    """Only the composition root chooses stores, readers, signers and services; the modules it
    wires (and the CLI and the functions, which ask it) never build a Runtime themselves."""
    allowed = {"runtime.py", "cli.py"}
    offenders = {
        str(path.relative_to(LAYER))
        for path in LAYER.rglob("*.py")
        if path.name not in allowed and "tokencore.runtime" in _imported_modules(path)
    }
    assert not offenders, offenders


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
