"""Key material: parsing, signing, key sets, the verifier's key cache, and the AWS backends.

Importing this package never imports boto3 (nor PyJWT): the authorizer's fast path imports it.
The AWS backends (``SecretsManagerKeySource``, ``KmsSigner``, ``KmsKeySource``,
``SsmJwksSource`` and the secret and parameter helpers) are loaded on first attribute access,
and even then import boto3 only when they first create a client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tokencore.keys.jwk import (
    PrivateKeyEntry,
    jwk_thumbprint,
    key_thumbprint,
    parse_json_document,
    parse_jwks,
    parse_private_jwk,
    parse_private_jwks,
    parse_public_jwk,
    private_jwk,
    public_jwk,
    verification_key_for,
)
from tokencore.keys.jwks import jwks_document
from tokencore.keys.keyring import JwksDocumentSource, KeyRing, StaticKeySource
from tokencore.keys.keyset import KeySet
from tokencore.keys.local import LocalSigner, generate_key
from tokencore.keys.model import KeySource, KeyStatus, VerificationKey

if TYPE_CHECKING:
    from tokencore.keys.kms import KmsKeySource, KmsSigner
    from tokencore.keys.secretsmanager import (
        SecretsManagerKeySource,
        create_key_set_secret,
        put_key_set_secret,
    )
    from tokencore.keys.ssm import SsmJwksSource

_LAZY = {
    "KmsKeySource": "tokencore.keys.kms",
    "KmsSigner": "tokencore.keys.kms",
    "SecretsManagerKeySource": "tokencore.keys.secretsmanager",
    "create_key_set_secret": "tokencore.keys.secretsmanager",
    "put_key_set_secret": "tokencore.keys.secretsmanager",
    "SsmJwksSource": "tokencore.keys.ssm",
}

__all__ = [
    "JwksDocumentSource",
    "KeyRing",
    "KeySet",
    "KeySource",
    "KeyStatus",
    "KmsKeySource",
    "KmsSigner",
    "LocalSigner",
    "PrivateKeyEntry",
    "SecretsManagerKeySource",
    "SsmJwksSource",
    "StaticKeySource",
    "VerificationKey",
    "create_key_set_secret",
    "generate_key",
    "jwk_thumbprint",
    "jwks_document",
    "key_thumbprint",
    "parse_json_document",
    "parse_jwks",
    "parse_private_jwk",
    "parse_private_jwks",
    "parse_public_jwk",
    "private_jwk",
    "public_jwk",
    "put_key_set_secret",
    "verification_key_for",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
