"""The public access-token JWKS in SSM Parameter Store, as verifiers read it.

Least privilege: the authorizer verifies access tokens without being able to read a private
key; it reads one String parameter (``ssm:GetParameter``) that whoever rotates the access key
set publishes (``ops.publishing``). Each load is one GetParameter; the KeyRing in front decides
when to load. Read failures are KeyUnavailable, a document that does not parse strictly is
InvalidKeyMaterial; messages never name the parameter or its value. docs/keys.md has the
parameter's format and its publication stamps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tokencore.awsclient import LazyClient, aws_errors, error_code
from tokencore.errors import ConfigError, KeyUnavailable
from tokencore.keys.jwk import JwksDocumentParser
from tokencore.keys.model import KeySource, VerificationKey

_WHAT: Final = "public JWKS parameter"


class SsmJwksSource:
    """A KeySource reading the public JWKS from one SSM String parameter."""

    def __init__(
        self,
        parameter_name: str,
        *,
        boto3_client: Any | None = None,
        boto3_session: Any | None = None,
        boto_config: Any | None = None,
    ) -> None:
        if not parameter_name:
            raise ConfigError("a public JWKS parameter name is required")
        self._name = parameter_name
        self._client = LazyClient("ssm", boto3_client, boto3_session, boto_config)
        self._parser = JwksDocumentParser(_WHAT)

    def load_verification_keys(self) -> list[VerificationKey]:
        """Read the parameter (one GetParameter) and parse it; every entry must be valid."""
        try:
            response = self._client.get().get_parameter(Name=self._name)
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not read the {_WHAT} ({error_code(exc)})") from exc
        return self._parser.parse_parameter(response)

    def __repr__(self) -> str:
        return "SsmJwksSource()"


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SOURCE: type[KeySource] = SsmJwksSource
