"""Keys and key lookups for the attack tests: generated once per session, never committed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tokencore.errors import UnknownKey
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner, generate_key
from tokencore.keys.model import VerificationKey


class KeyLookup:
    """A fixed set of verification keys: ``get(kid)`` or ``UnknownKey``. Records every kid it is
    asked for, so a test can prove that a hostile header was refused before any key was used."""

    def __init__(self, *keys: VerificationKey) -> None:
        self._keys = {key.kid: key for key in keys}
        self.calls: list[str] = []

    def get(self, kid: str) -> VerificationKey:
        self.calls.append(kid)
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKey("unknown kid") from None


@dataclass(frozen=True)
class Keys:
    """Our access keys (one per algorithm), our refresh key, and an attacker's keys."""

    rs256: PrivateKeyEntry
    es256: PrivateKeyEntry
    eddsa: PrivateKeyEntry
    refresh: PrivateKeyEntry
    attacker_rs256: PrivateKeyEntry
    attacker_es256: PrivateKeyEntry

    @property
    def access_entries(self) -> tuple[PrivateKeyEntry, ...]:
        return (self.rs256, self.es256, self.eddsa)

    def signer(self, entry: PrivateKeyEntry) -> LocalSigner:
        return LocalSigner(entry)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rs256=generate_key("RS256"),
        es256=generate_key("ES256"),
        eddsa=generate_key("EdDSA"),
        refresh=generate_key("HS256"),
        attacker_rs256=generate_key("RS256"),
        attacker_es256=generate_key("ES256"),
    )


@pytest.fixture
def access_keys(keys: Keys) -> KeyLookup:
    """The access-token key set: public keys only, as a KeyRing built from the JWKS."""
    return KeyLookup(*(entry.verification_key() for entry in keys.access_entries))


@pytest.fixture
def refresh_keys(keys: Keys) -> KeyLookup:
    """The refresh-token key set: the HS256 secret only."""
    return KeyLookup(keys.refresh.verification_key())


@pytest.fixture
def all_keys(keys: Keys) -> KeyLookup:
    """A misconfiguration: one lookup holding access and refresh keys alike. Token kinds must
    still never cross, because the verify functions restrict the algorithms themselves."""
    entries = (*keys.access_entries, keys.refresh)
    return KeyLookup(*(entry.verification_key() for entry in entries))
