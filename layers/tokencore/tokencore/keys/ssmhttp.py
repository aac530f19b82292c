"""The public JWKS parameter, read without boto3: what verifiers use where the environment has
credentials (Lambda always does; so does ``make dev``).

Same parameter, same strict parsing and the same errors as ``tokencore.keys.ssm.SsmJwksSource``
(KeyUnavailable naming the AWS error code, InvalidKeyMaterial for a bad document); only the
transport differs: one SigV4-signed ``GetParameter`` over a kept-alive connection
(``tokencore.awshttp``), so a cold start or a key refresh never imports boto3. ``public_jwks_
source`` picks this one when the environment has credentials, and the boto3 one otherwise (an
operator's laptop with a profile, where tokenctl runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tokencore.awshttp import AwsCallFailed, AwsJsonClient, env_credentials
from tokencore.errors import ConfigError, KeyUnavailable
from tokencore.keys.jwk import JwksDocumentParser
from tokencore.keys.model import KeySource, VerificationKey

_WHAT: Final = "public JWKS parameter"


def ssm_client() -> AwsJsonClient:
    return AwsJsonClient("ssm", "AmazonSSM", json_version="1.1")


class SsmHttpJwksSource:
    """A KeySource reading the public JWKS from one SSM String parameter, boto3-free."""

    def __init__(self, parameter_name: str, client: AwsJsonClient | None = None) -> None:
        if not parameter_name:
            raise ConfigError("a public JWKS parameter name is required")
        self._name = parameter_name
        self._client = client or ssm_client()
        self._parser = JwksDocumentParser(_WHAT)

    def load_verification_keys(self) -> list[VerificationKey]:
        """One GetParameter, parsed strictly; every entry must be valid."""
        try:
            response = self._client.call("GetParameter", {"Name": self._name})
        except AwsCallFailed as exc:
            raise KeyUnavailable(f"could not read the {_WHAT} ({exc.code})") from exc
        return self._parser.parse_parameter(response)

    def __repr__(self) -> str:
        return "SsmHttpJwksSource()"


def public_jwks_source(parameter_name: str) -> KeySource:
    """Where verifiers read the public JWKS: without boto3 when the environment holds
    credentials (every Lambda function, the local stack), through boto3 otherwise."""
    if env_credentials() is not None:
        return SsmHttpJwksSource(parameter_name)
    from tokencore.keys.ssm import SsmJwksSource

    return SsmJwksSource(parameter_name)


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SOURCE: type[KeySource] = SsmHttpJwksSource
