"""Key sets stored in AWS Secrets Manager (the default backend).

The secret is read once and the parsed KeySet is kept: parsing a private key costs far more
than a signature, and GetSecretValue is a network call with its own quota. With
``max_age_seconds`` (the Runtime passes JWKS_CACHE_TTL_SECONDS) the set is read again once it is
that old, so a warm container follows a rotation or a revocation within that bound instead of
signing with its first key for its whole life. If that read fails, the set is not served stale:
signing fails (503, retry) rather than stretch the bound the key lifecycle counts on
(``keys.lifecycle``: a retired key is removed that long after it stopped signing).
``load_verification_keys`` is the refetch path (a KeyRing calls it on expiry or an unknown
kid), so it always reads the secret again and replaces the cached set when the new one parses;
a new set that does not parse leaves the old one in place until it expires.

``KeySetSigner`` is the Signer the functions use: each token is signed by the active key of the
set as it is now (``current()``), so the kid in a token's header and the key that signs it always
come from one set.

Secret format: see ``tokencore.keys.keyset``. Messages name the purpose and the AWS error
code, never the secret id or its content.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from tokencore.awsclient import LazyClient, aws_errors, error_code
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.errors import ConfigError, InvalidKeyMaterial, KeyUnavailable
from tokencore.jose.algorithms import KeyPurpose, Signer
from tokencore.keys.keyset import KeySet, check_purpose
from tokencore.keys.model import KeySource, VerificationKey


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
        clock: Clock = SYSTEM_CLOCK,
        max_age_seconds: float | None = None,
    ) -> None:
        if not secret_id:
            raise ConfigError("a key secret id is required")
        if max_age_seconds is not None and max_age_seconds <= 0:
            raise ConfigError("a key set's maximum age must be positive")
        self._secret_id = secret_id
        self._purpose = check_purpose(purpose)
        self._client = LazyClient("secretsmanager", boto3_client, boto3_session, boto_config)
        self._clock = clock
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._key_set: KeySet | None = None
        self._read_at = float("-inf")

    @property
    def purpose(self) -> KeyPurpose:
        return self._purpose

    def key_set(self) -> KeySet:
        """The cached key set: read on first use, and again once older than the maximum age."""
        key_set = self._key_set
        if key_set is not None and not self._expired():
            return key_set
        with self._lock:
            if self._key_set is None or self._expired():
                now = self._clock.now()
                self._key_set = self._read()
                self._read_at = now
            return self._key_set

    def _expired(self) -> bool:
        return self._max_age is not None and self._clock.now() - self._read_at >= self._max_age

    def signer(self) -> Signer:
        """The signer of the active key now (fixed: use ``KeySetSigner`` to follow rotations)."""
        return self.key_set().signer()

    def load_verification_keys(self) -> list[VerificationKey]:
        """Read the secret again (the refetch path) and return every key that verifies."""
        now = self._clock.now()
        key_set = self._read()
        with self._lock:
            self._key_set = key_set
            self._read_at = now
        return key_set.verification_keys()

    def _read(self) -> KeySet:
        what = f"{self._purpose} key secret"
        try:
            # AWSCURRENT is the default; naming it also reads the right version from moto,
            # which otherwise serves the version AWSCURRENT was on before a rotation moved it.
            response = self._client.get().get_secret_value(
                SecretId=self._secret_id, VersionStage="AWSCURRENT"
            )
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not read the {what} ({error_code(exc)})") from exc
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise InvalidKeyMaterial(f"{what} has no SecretString")
        return KeySet.from_secret_document(text, self._purpose)

    def __repr__(self) -> str:
        return f"SecretsManagerKeySource(purpose={self._purpose!r})"


class KeySetSigner:
    """The Signer of whatever key is active in a key set now (implements Signer).

    ``current()`` pins one key for one token (``tokens.mint`` calls it once per token); ``kid``,
    ``alg`` and ``sign`` ask the set each time, for callers that only need one of them.
    """

    __slots__ = ("_source",)

    def __init__(self, source: SecretsManagerKeySource) -> None:
        self._source = source

    def current(self) -> Signer:
        return self._source.key_set().signer()

    @property
    def kid(self) -> str:
        return self.current().kid

    @property
    def alg(self) -> str:
        return self.current().alg

    def sign(self, signing_input: bytes) -> bytes:
        return self.current().sign(signing_input)

    def __repr__(self) -> str:
        return f"KeySetSigner(purpose={self._source.purpose!r})"


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


if TYPE_CHECKING:  # mypy checks that the classes implement the protocols
    _SOURCE: type[KeySource] = SecretsManagerKeySource
    _SIGNER: type[Signer] = KeySetSigner
