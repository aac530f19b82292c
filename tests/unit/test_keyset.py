"""KeySet (tokencore.keys.keyset): the rules of a key set and its secret document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokencore.errors import InvalidKeyMaterial
from tokencore.keys import KeySet, KeyStatus, PrivateKeyEntry, generate_key, private_jwk


@pytest.fixture(scope="module")
def access_entries() -> list[PrivateKeyEntry]:
    return [
        generate_key("ES256", KeyStatus.ACTIVE),
        generate_key("EdDSA", KeyStatus.NEXT),
        generate_key("RS256", KeyStatus.RETIRED),
    ]


@pytest.fixture(scope="module")
def refresh_entries() -> list[PrivateKeyEntry]:
    return [generate_key("HS256", KeyStatus.RETIRED), generate_key("HS256", KeyStatus.ACTIVE)]


def test_the_signer_is_the_active_key(access_entries: list[PrivateKeyEntry]) -> None:
    key_set = KeySet(access_entries, "access")
    active = access_entries[0]
    assert key_set.active is active
    signer = key_set.signer()
    assert (signer.kid, signer.alg) == (active.kid, "ES256")
    assert key_set.signer() is signer  # built once, not per call
    signature = signer.sign(b"a.b")
    public = active.verification_key().key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, b"a.b", ec.ECDSA(hashes.SHA256()))


def test_verification_keys_are_active_next_retired(access_entries: list[PrivateKeyEntry]) -> None:
    key_set = KeySet(reversed(access_entries), "access")
    keys = key_set.verification_keys()
    assert [(key.kid, key.status) for key in keys] == [
        (access_entries[0].kid, KeyStatus.ACTIVE),
        (access_entries[1].kid, KeyStatus.NEXT),
        (access_entries[2].kid, KeyStatus.RETIRED),
    ]
    keys.clear()  # a copy: the set itself cannot be changed through it
    assert len(key_set.verification_keys()) == 3
    assert isinstance(key_set.entries, tuple)


def test_refresh_set_holds_hs256_keys(refresh_entries: list[PrivateKeyEntry]) -> None:
    key_set = KeySet(refresh_entries, "refresh")
    assert key_set.signer().kid == refresh_entries[1].kid
    assert all(key.is_symmetric for key in key_set.verification_keys())


@pytest.mark.parametrize(
    "statuses",
    [(KeyStatus.NEXT, KeyStatus.RETIRED), (KeyStatus.ACTIVE, KeyStatus.ACTIVE)],
    ids=["no active key", "two active keys"],
)
def test_exactly_one_active_key(statuses: tuple[KeyStatus, ...]) -> None:
    entries = [generate_key("EdDSA", status) for status in statuses]
    with pytest.raises(InvalidKeyMaterial, match="exactly one active"):
        KeySet(entries, "access")


def test_kids_are_unique() -> None:
    entry = generate_key("EdDSA")
    with pytest.raises(InvalidKeyMaterial, match="twice"):
        KeySet([entry, entry.with_status(KeyStatus.RETIRED)], "access")


def test_algorithm_families_do_not_mix(
    access_entries: list[PrivateKeyEntry], refresh_entries: list[PrivateKeyEntry]
) -> None:
    hs = refresh_entries[0]
    with pytest.raises(InvalidKeyMaterial, match="HS256"):
        KeySet([*access_entries, hs], "access")
    with pytest.raises(InvalidKeyMaterial, match="ES256"):
        KeySet([*refresh_entries, access_entries[0].with_status(KeyStatus.NEXT)], "refresh")
    # Different asymmetric algorithms in one access set: an algorithm migration.
    assert len(KeySet(access_entries, "access").verification_keys()) == 3


def test_purpose_and_emptiness_are_checked(access_entries: list[PrivateKeyEntry]) -> None:
    with pytest.raises(InvalidKeyMaterial, match="purpose"):
        KeySet(access_entries, "id")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyMaterial, match="empty"):
        KeySet([], "access")
    with pytest.raises(InvalidKeyMaterial):
        KeySet(["not a key"], "access")  # type: ignore[list-item]


@pytest.mark.parametrize("purpose", ["access", "refresh"])
def test_secret_document_round_trip(
    purpose: str,
    access_entries: list[PrivateKeyEntry],
    refresh_entries: list[PrivateKeyEntry],
) -> None:
    entries = access_entries if purpose == "access" else refresh_entries
    key_set = KeySet(entries, purpose)  # type: ignore[arg-type]
    document = key_set.to_secret_document()
    assert document["version"] == 1
    assert [jwk["kid"] for jwk in document["keys"]] == [entry.kid for entry in entries]
    assert [jwk["status"] for jwk in document["keys"]] == [entry.status.value for entry in entries]
    assert all("alg" in jwk for jwk in document["keys"])
    text = json.dumps(document)
    for source in (document, text):
        again = KeySet.from_secret_document(source, purpose)  # type: ignore[arg-type]
        assert again.to_secret_document() == document
        assert again.signer().kid == key_set.signer().kid
    again = KeySet.from_secret_document(text, purpose)  # type: ignore[arg-type]
    if purpose == "refresh":  # HMAC is deterministic: the same secret came back
        assert again.signer().sign(b"x.y") == key_set.signer().sign(b"x.y")
    assert [key.kid for key in again.verification_keys()] == [
        key.kid for key in key_set.verification_keys()
    ]


def _document(entries: list[PrivateKeyEntry], **changes: Any) -> dict[str, Any]:
    return {"version": 1, "keys": [private_jwk(entry) for entry in entries], **changes}


def test_secret_document_refusals(
    access_entries: list[PrivateKeyEntry], refresh_entries: list[PrivateKeyEntry]
) -> None:
    good = _document(access_entries)
    bad_documents: dict[str, Any] = {
        "version missing": {"keys": good["keys"]},
        "version 2": _document(access_entries, version=2),
        "version as text": _document(access_entries, version="1"),
        "version as bool": _document(access_entries, version=True),
        "keys missing": {"version": 1},
        "keys empty": _document([]),
        "no active key": _document(access_entries[1:]),
        "refresh keys in an access secret": _document(refresh_entries),
        "public key only": {"version": 1, "keys": [{**good["keys"][0], "d": None}]},
        "not an object": "[]",
        "not JSON": "{not json",
        "duplicate member": '{"version": 1, "version": 1, "keys": []}',
    }
    for name, document in bad_documents.items():
        with pytest.raises(InvalidKeyMaterial) as caught:
            KeySet.from_secret_document(document, "access")
        message = caught.value.message
        for jwk in good["keys"]:
            for member in ("d", "p", "q", "k"):
                if member in jwk:
                    assert jwk[member] not in message, name
    assert KeySet.from_secret_document({**good, "note": "rotated 2026-01"}, "access")


def test_reprs_name_kids_only(refresh_entries: list[PrivateKeyEntry]) -> None:
    key_set = KeySet(refresh_entries, "refresh")
    text = repr(key_set)
    assert refresh_entries[1].kid in text
    for jwk in key_set.to_secret_document()["keys"]:
        assert jwk["k"] not in text
        assert jwk["k"] not in repr(key_set.signer())
