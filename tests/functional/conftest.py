"""A whole stack in moto for the handler tests: table, key sets in Secrets Manager, the public
JWKS in SSM, two users, and the container Runtime the handlers use. Keys are generated here, at
test time; nothing secret is committed.

Every test gets empty AWS backends and builds its stack again (about 40 ms): what made that cost
0.5-1.6 s was not moto's state but boto3's, rebuilt by every ``mock_aws()`` (a new default
session parses the service models again). ``fresh_aws()`` keeps boto3's default session, and
the stack is built with clients created once per run. A client holds no AWS state (moto keeps
that in its backends, emptied when each test's mock starts), so sharing clients shares nothing
a test can see; ``test_stack_isolation.py`` proves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from argon2 import PasswordHasher
from moto import mock_aws
from moto.core.models import MockAWS

from tests.clock import ManualClock
from tokencore.config import Settings, reset_settings
from tokencore.keys import KeySet, PrivateKeyEntry, generate_key, jwks_document
from tokencore.keys.secretsmanager import create_key_set_secret
from tokencore.runtime import Parts, Runtime, set_runtime
from tokencore.service import LoginRequest, TokenGrant
from tokencore.store.table import create_table
from tokencore.users import User

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
ISSUER = "https://auth.example.com"
USER_PASSWORD = "correct horse battery staple"  # test-only, not a secret of any deployment
ADMIN_PASSWORD = "admin passphrase for tests only"

STACK_ENV = {
    "TOKEN_ISSUER": ISSUER,
    "TOKEN_AUDIENCE": "tokencore-api",
    "SESSIONS_TABLE_NAME": "tokencore-test",
    "SIGNING_KEYS_SECRET_ID": "tokencore/test/signing-keys",
    "REFRESH_KEYS_SECRET_ID": "tokencore/test/refresh-keys",
    "PUBLIC_JWKS_PARAMETER": "/tokencore/test/public-jwks",
    "SESSION_CHECK_SAMPLE_RATE": "0",
    "ALLOWED_ORIGINS": "https://app.example.com",
}


# Cheap Argon2 parameters keep the suite fast; the real ones are tested in unit tests. The
# stack's users are hashed with them, so every runtime of a stack uses them too (the default
# hasher would rehash at login: one more write that a deployment never makes).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class Stack:
    runtime: Runtime
    clock: ManualClock
    settings: Settings
    access_keys: KeySet
    refresh_keys: KeySet
    user: User
    admin: User

    def rewire(self, settings: Settings | None = None, **parts: Any) -> Runtime:
        """Install a new Runtime (a fresh container of the same stack) built with these
        settings and these parts replaced, and return it."""
        current = self.runtime
        runtime = Runtime(settings or current.settings, self.clock, current.parts.replace(**parts))
        self.runtime = runtime
        set_runtime(runtime)
        return runtime

    def login(
        self, username: str = "alice", password: str = USER_PASSWORD, **extra: Any
    ) -> TokenGrant:
        return self.runtime.auth.login(LoginRequest(username, password, **extra))

    def login_admin(self) -> TokenGrant:
        return self.login("root", ADMIN_PASSWORD)


@pytest.fixture
def authz(stack: Stack) -> Stack:
    """The stack with the authorizer's key ring started from the public keys, as PUBLIC_JWKS
    does in a deployed container: verifying makes no call until the keys' TTL passes."""
    stack.rewire(initial_access_keys=stack.access_keys.verification_keys())
    return stack


def load_event(relative: str, **replacements: str) -> dict[str, Any]:
    """Load events/<relative> and replace ``{{name}}`` placeholders (tokens are minted by the
    test, never stored in a fixture)."""
    text = (EVENTS_DIR / relative).read_text(encoding="utf-8")
    for name, value in replacements.items():
        text = text.replace("{{" + name + "}}", value)
    event: dict[str, Any] = json.loads(text)
    return event


@pytest.fixture(scope="session")
def generated_keys() -> dict[str, PrivateKeyEntry]:
    """Keys generated once per test run (RSA generation dominates a stack's setup otherwise)."""
    return {alg: generate_key(alg) for alg in ("RS256", "ES256", "EdDSA", "HS256")}


def fresh_aws() -> MockAWS:
    """``mock_aws()`` with empty backends, keeping boto3's default session: tests that call
    ``boto3.client()`` reuse its parsed service models instead of parsing them again."""
    return mock_aws(config={"core": {"reset_boto3_session": False}})


@dataclass(frozen=True)
class AwsClients:
    """The clients the fixtures build stacks with, created once per run."""

    dynamodb: Any
    secretsmanager: Any
    ssm: Any


@pytest.fixture(scope="session")
def aws_clients() -> AwsClients:
    session = boto3.session.Session()
    return AwsClients(
        session.client("dynamodb"), session.client("secretsmanager"), session.client("ssm")
    )


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
    generated_keys: dict[str, PrivateKeyEntry],
    aws_clients: AwsClients,
) -> Iterator[Stack]:
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    with fresh_aws():
        settings = Settings.from_env()
        create_table(aws_clients.dynamodb, settings.sessions_table_name)
        access_keys = KeySet([generated_keys[settings.access_token_alg]], "access")
        refresh_keys = KeySet([generated_keys["HS256"]], "refresh")
        secrets = aws_clients.secretsmanager
        create_key_set_secret(secrets, settings.signing_keys_secret_id, access_keys)
        create_key_set_secret(secrets, settings.refresh_keys_secret_id, refresh_keys)
        aws_clients.ssm.put_parameter(
            Name=settings.public_jwks_parameter,
            Type="String",
            Value=json.dumps(jwks_document(access_keys.verification_keys())),
            Overwrite=True,
        )
        runtime = Runtime(settings, clock, Parts(password_hasher=CHEAP_HASHER))
        user = runtime.users.create_user(
            "alice", USER_PASSWORD, email="alice@example.com", roles=["user"]
        )
        admin = runtime.users.create_user(
            "root", ADMIN_PASSWORD, email="root@example.com", roles=["admin", "user"]
        )
        set_runtime(runtime)
        try:
            yield Stack(runtime, clock, settings, access_keys, refresh_keys, user, admin)
        finally:
            set_runtime(None)
