"""The public access-token JWKS in SSM Parameter Store (Secrets Manager mode, verifiers).

Least privilege: the authorizer verifies access tokens without being able to read a private
key. Whoever rotates the access key set (and may read its secret) publishes the public half
with ``publish_public_jwks``; verifiers read only that parameter (``ssm:GetParameter`` on one
parameter name, no ``secretsmanager:GetSecretValue``, no ``kms:Decrypt``).

The parameter is a plain ``String`` holding a JWKS document: it is public by design, and a
``SecureString`` would cost verifiers a KMS permission for nothing. A document of three RSA-4096
keys stays well under the Standard tier's 4 KB.

``SsmJwksSource`` does not cache: each load is one GetParameter, and the KeyRing in front of it
decides when to load (on expiry, or on an unknown kid with a rate limit). Read failures are
KeyUnavailable; a document that does not parse strictly is InvalidKeyMaterial. Messages name
the parameter's role and the AWS error code, never the parameter name or its value.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from tokencore.awsclient import LazyClient, aws_errors, error_code
from tokencore.errors import ConfigError, InvalidKeyMaterial, KeyUnavailable
from tokencore.keys.jwk import parse_json_document, parse_jwks
from tokencore.keys.jwks import jwks_document
from tokencore.keys.keyset import KeySet
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

    def load_verification_keys(self) -> list[VerificationKey]:
        """Read the parameter (one GetParameter) and parse it; every entry must be valid."""
        try:
            response = self._client.get().get_parameter(Name=self._name)
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not read the {_WHAT} ({error_code(exc)})") from exc
        parameter = response.get("Parameter")
        value = parameter.get("Value") if isinstance(parameter, dict) else None
        if not isinstance(value, str):
            raise InvalidKeyMaterial(f"{_WHAT} has no value")
        return parse_jwks(parse_json_document(value, _WHAT))

    def __repr__(self) -> str:
        return "SsmJwksSource()"


def public_jwks_text(key_set: KeySet) -> str:
    """The JWKS of ``key_set``'s public keys as compact JSON, as verifiers will read it.

    ``jwks_document`` builds public JWKs from public keys only. The document is parsed back
    with the verifiers' own strict parser before it leaves, which refuses any private member:
    a guard for text that every verifier, and anyone who may read the parameter, can see; and
    a bad rotation fails here, at the publisher, rather than in every authorizer.
    """
    if key_set.purpose != "access":
        raise InvalidKeyMaterial("only the access key set has a public JWKS")
    document = jwks_document(key_set.verification_keys())  # an access set is never empty
    parse_jwks(document)
    return json.dumps(document, separators=(",", ":"))


def publish_public_jwks(ssm_client: Any, parameter_name: str, key_set: KeySet) -> None:
    """Write the public half of ``key_set`` to ``parameter_name`` (String, overwritten): the
    rotation step that follows each change of the access key secret."""
    text = public_jwks_text(key_set)
    try:
        ssm_client.put_parameter(Name=parameter_name, Value=text, Type="String", Overwrite=True)
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not publish the {_WHAT} ({error_code(exc)})") from exc


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SOURCE: type[KeySource] = SsmJwksSource
