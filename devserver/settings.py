"""What `make dev` and `make ctl` agree on, in one place: ports, the fake AWS account, and the
environment both build from template.yaml.

``local_environment`` is the whole story: the developer's environment, scrubbed of anything
that could reach a real AWS account, plus the embedded endpoint, fake credentials, and the
settings the template gives every function (``Globals.Function.Environment.Variables``), with
the developer's own values winning. ``python -m devserver`` (make dev) provisions the stack from
it; ``python -m devserver.ctl`` (make ctl) runs the operator CLI with exactly the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3000
DEFAULT_AWS_PORT: Final = 4566
# moto's default account; the region is fixed so that `make dev` and `make ctl` always meet.
ACCOUNT_ID: Final = "123456789012"
REGION: Final = "us-east-1"
# "tokencore": the template derives its physical names from the stack name, and these give the
# settings' own defaults (tokencore-sessions, tokencore/signing-keys, /tokencore/public-jwks).
STACK_NAME: Final = "tokencore"
API_ID: Final = "devlocal01"

FAKE_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}

# Removed from the developer's environment: each could send a call past the embedded endpoint
# or sign it with real credentials.
_SCRUBBED: Final = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
)

# The local stack's own defaults for things Lambda provides or the template leaves to the
# platform; the developer's environment still wins.
LOCAL_DEFAULTS: Final = {
    # No X-Ray daemon here; EMF metric documents on stdout would bury the request log.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


class DevError(Exception):
    """A problem the developer can fix; the message is one line and names what to change."""


@dataclass(frozen=True, slots=True)
class Ports:
    http: int
    aws: int

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.http}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.aws}"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise DevError(f"{name} must be a port number between 1 and 65535")
    return int(raw)


def ports_from(env: Mapping[str, str]) -> Ports:
    ports = Ports(
        http=_port(env, "PORT", DEFAULT_PORT), aws=_port(env, "AWS_PORT", DEFAULT_AWS_PORT)
    )
    if ports.http == ports.aws:
        raise DevError(f"PORT and AWS_PORT must differ (both are {ports.http})")
    return ports


CONCURRENCY_VARIABLE: Final = "DEV_FUNCTION_CONCURRENCY"
DEFAULT_CONCURRENCY: Final = 4
MAX_CONCURRENCY: Final = 64  # each container is a Python process of some 60 MiB


def function_concurrency(env: Mapping[str, str]) -> int:
    """How many containers each function may run at once (devserver.lambdas)."""
    raw = (env.get(CONCURRENCY_VARIABLE) or "").strip()
    if not raw:
        return DEFAULT_CONCURRENCY
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CONCURRENCY:
        raise DevError(f"{CONCURRENCY_VARIABLE} must be a whole number from 1 to {MAX_CONCURRENCY}")
    return int(raw)


def aws_environment(ports: Ports) -> dict[str, str]:
    """Endpoint, fake credentials, region; no shared config or credentials file is read."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": ports.endpoint_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def scrubbed(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that could reach real AWS (see ``_SCRUBBED``), including
    per-service endpoints (``AWS_ENDPOINT_URL_DYNAMODB``...), which would beat ours."""
    return {
        name: value
        for name, value in env.items()
        if name not in _SCRUBBED and not name.startswith("AWS_ENDPOINT_URL_")
    }


def developer_settings(env: Mapping[str, str], ports: Ports) -> dict[str, str]:
    """The developer's environment as the template's parameter overrides see it: their own
    values, and TOKEN_ISSUER defaulting to this stack's URL (the template's default is a
    placeholder for deployments)."""
    settings = dict(env)
    if not (settings.get("TOKEN_ISSUER") or "").strip():
        settings["TOKEN_ISSUER"] = ports.api_url
    return settings
