"""Key sets stored in AWS Secrets Manager (the default backend).

The secret is read once per container and the parsed KeySet is kept: parsing a private key
costs far more than a signature, and GetSecretValue is a network call with its own quota.
``load_verification_keys`` is the refetch path (a KeyRing calls it on expiry or an unknown
kid), so it always reads the secret again and replaces the cached set when the new one parses;
a new set that does not parse leaves the old one in place for signing.

Secret format: see ``tokencore.keys.keyset``. Messages name the purpose and the AWS error
code, never the secret id or its content.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from tokencore.awsclient import LazyClient, aws_errors, error_code
from tokencore.errors import ConfigError, InvalidKeyMaterial, KeyUnavailable
from tokencore.keys.keyset import KeySet, check_purpose
from tokencore.keys.model import KeyPurpose, KeySource, Signer, VerificationKey


class SecretsManagerKeySource:
    """A KeySource (and the signer) backed by one Secrets Manager secret."""

    def __init__(
        self,
        secret_id: str,
        purpose: KeyPurpose,
        *,
        boto3_client: Any | None = None,
        boto3_session: Any | None = None,
        boto_config: Any | None = None,
    ) -> None:
        if not secret_id:
            raise ConfigError("a key secret id is required")
        self._secret_id = secret_id
        self._purpose = check_purpose(purpose)
        self._client = LazyClient("secretsmanager", boto3_client, boto3_session, boto_config)
        self._lock = threading.Lock()
        self._key_set: KeySet | None = None

    @property
    def purpose(self) -> KeyPurpose:
        return self._purpose

    def key_set(self) -> KeySet:
        """The cached key set, read from the secret on first use."""
        key_set = self._key_set
        if key_set is None:
            with self._lock:
                if self._key_set is None:
                    self._key_set = self._read()
                key_set = self._key_set
        return key_set

    def signer(self) -> Signer:
        return self.key_set().signer()

    def load_verification_keys(self) -> list[VerificationKey]:
        """Read the secret again (the refetch path) and return every key that verifies."""
        key_set = self._read()
        with self._lock:
            self._key_set = key_set
        return key_set.verification_keys()

    def _read(self) -> KeySet:
        what = f"{self._purpose} key secret"
        try:
            response = self._client.get().get_secret_value(SecretId=self._secret_id)
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not read the {what} ({error_code(exc)})") from exc
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise InvalidKeyMaterial(f"{what} has no SecretString")
        return KeySet.from_secret_document(text, self._purpose)

    def __repr__(self) -> str:
        return f"SecretsManagerKeySource(purpose={self._purpose!r})"


def _secret_string(key_set: KeySet) -> str:
    return json.dumps(key_set.to_secret_document(), separators=(",", ":"))


def create_key_set_secret(client: Any, name: str, key_set: KeySet) -> str:
    """Create a secret holding ``key_set`` (local stack, tests, first deployment); its ARN."""
    try:
        response = client.create_secret(Name=name, SecretString=_secret_string(key_set))
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not create the key secret ({error_code(exc)})") from exc
    return str(response["ARN"])


def put_key_set_secret(client: Any, secret_id: str, key_set: KeySet) -> None:
    """Store ``key_set`` as the secret's new current version (a rotation step)."""
    try:
        client.put_secret_value(SecretId=secret_id, SecretString=_secret_string(key_set))
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not update the key secret ({error_code(exc)})") from exc


if TYPE_CHECKING:  # mypy checks that the class implements the protocol
    _SOURCE: type[KeySource] = SecretsManagerKeySource
