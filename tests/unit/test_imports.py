"""Package rules that hold across modules: the pure core and the authorizer's fast path never
load boto3 or botocore at import time (each AWS backend imports boto3 on its first call)."""

from __future__ import annotations

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
