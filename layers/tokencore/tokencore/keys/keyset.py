"""A set of private keys for one purpose, as stored in a secret.

The secret document is ``{"version": 1, "keys": [<private JWK with "status">, ...]}``, with
optional ``created_at``/``retired_at`` stamps per key and other top-level members ignored (the
rotation records itself in ``rotation``); docs/keys.md ("Formats") has an example. ``status``
is ``next``, ``active`` (exactly one) or ``retired``.

An access set holds keys of the access algorithms only (asymmetric; mixing them is how an
algorithm migration rotates); a refresh set holds keys of the refresh HMAC only
(``jose.algorithms`` says which). Mixing the two would let a refresh secret sign access tokens
or put a secret into the published JWKS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tokencore.errors import InvalidKeyMaterial
from tokencore.jose.algorithms import ALGORITHMS, KeyPurpose, Signer
from tokencore.keys.jwk import (
    PrivateKeyEntry,
    parse_json_document,
    parse_private_jwks,
    private_jwk,
)
from tokencore.keys.jwks import sort_by_status
from tokencore.keys.local import LocalSigner
from tokencore.keys.model import KeyStatus, VerificationKey

SECRET_DOCUMENT_VERSION = 1


def check_purpose(purpose: object) -> KeyPurpose:
    """Return ``purpose`` if it is "access" or "refresh"; raise InvalidKeyMaterial otherwise."""
    if purpose == "access":
        return "access"
    if purpose == "refresh":
        return "refresh"
    raise InvalidKeyMaterial("key purpose must be 'access' or 'refresh'")


class KeySet:
    """Immutable: exactly one active key, unique kids, one algorithm family per purpose.

    The signer and the verification keys are built once here, so a container parses its keys
    once and signs many times.
    """

    __slots__ = ("_active", "_entries", "_purpose", "_signer", "_verification_keys")

    def __init__(self, entries: Iterable[PrivateKeyEntry], purpose: KeyPurpose) -> None:
        self._purpose = check_purpose(purpose)
        self._entries = tuple(entries)
        if not self._entries:
            raise InvalidKeyMaterial(f"{purpose} key set is empty")
        allowed = ALGORITHMS.allowed(self._purpose)
        kids: set[str] = set()
        for entry in self._entries:
            if not isinstance(entry, PrivateKeyEntry):
                raise InvalidKeyMaterial(f"{purpose} key set holds something that is not a key")
            if entry.alg not in allowed:
                raise InvalidKeyMaterial(
                    f"{purpose} key set must not hold {entry.alg} key {entry.kid!r}"
                )
            if entry.kid in kids:
                raise InvalidKeyMaterial(f"{purpose} key set has the kid {entry.kid!r} twice")
            kids.add(entry.kid)
        active = [entry for entry in self._entries if entry.status is KeyStatus.ACTIVE]
        if len(active) != 1:
            raise InvalidKeyMaterial(
                f"{purpose} key set needs exactly one active key, found {len(active)}"
            )
        self._active = active[0]
        self._signer = LocalSigner(self._active)
        self._verification_keys = tuple(
            sort_by_status(entry.verification_key() for entry in self._entries)
        )

    @property
    def purpose(self) -> KeyPurpose:
        return self._purpose

    @property
    def entries(self) -> tuple[PrivateKeyEntry, ...]:
        return self._entries

    @property
    def active(self) -> PrivateKeyEntry:
        return self._active

    def signer(self) -> Signer:
        """The signer of the one active key."""
        return self._signer

    def verification_keys(self) -> list[VerificationKey]:
        """Every key that verifies: active, next (already published) and retired."""
        return list(self._verification_keys)

    def to_secret_document(self) -> dict[str, Any]:
        return {
            "keys": [private_jwk(entry) for entry in self._entries],
            "version": SECRET_DOCUMENT_VERSION,
        }

    @classmethod
    def from_secret_document(cls, doc: Mapping[str, object] | str, purpose: KeyPurpose) -> KeySet:
        """Parse a secret document (a parsed mapping or its JSON text); see the module doc."""
        check_purpose(purpose)
        what = f"{purpose} key secret"
        document = parse_json_document(doc, what) if isinstance(doc, str) else doc
        if not isinstance(document, Mapping):
            raise InvalidKeyMaterial(f"{what} is not a JSON object")
        version = document.get("version")
        if type(version) is not int or version != SECRET_DOCUMENT_VERSION:
            raise InvalidKeyMaterial(f"{what} must have version {SECRET_DOCUMENT_VERSION}")
        try:
            entries = parse_private_jwks(document)
        except InvalidKeyMaterial as exc:
            raise InvalidKeyMaterial(f"{what}: {exc.message}") from exc
        return cls(entries, purpose)

    def __repr__(self) -> str:  # kids and statuses only
        kids = ", ".join(f"{entry.kid}:{entry.status.value}" for entry in self._entries)
        return f"KeySet(purpose={self._purpose!r}, keys=[{kids}])"
