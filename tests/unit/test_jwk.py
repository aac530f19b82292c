"""JWK parsing and export (tokencore.keys.jwk) and the published JWKS (tokencore.keys.jwks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokencore.errors import InvalidKeyMaterial
from tokencore.jose.codec import is_valid_kid
from tokencore.keys import (
    KeyStatus,
    LocalSigner,
    PrivateKeyEntry,
    VerificationKey,
    generate_key,
    jwk_thumbprint,
    jwks_document,
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

ASYMMETRIC = ("RS256", "ES256", "EdDSA")
ALL_ALGS = (*ASYMMETRIC, "HS256")

# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 8037 appendix A.2/A.3: the example Ed25519 public key and its thumbprint.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verifies(key: VerificationKey, message: bytes, signature: bytes) -> bool:
    """Verify a JWS-form signature with cryptography directly, independently of the code."""
    material = key.key
    try:
        if key.alg == "HS256":
            assert isinstance(material, bytes)
            expected = hmac.new(material, message, hashlib.sha256).digest()
            return hmac.compare_digest(expected, signature)
        if key.alg == "RS256":
            assert isinstance(material, rsa.RSAPublicKey)
            material.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif key.alg == "ES256":
            assert isinstance(material, ec.EllipticCurvePublicKey)
            if len(signature) != 64:
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            material.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        elif key.alg == "EdDSA":
            assert isinstance(material, Ed25519PublicKey)
            material.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@pytest.fixture(scope="module")
def entries() -> dict[str, PrivateKeyEntry]:
    return {alg: generate_key(alg) for alg in ALL_ALGS}


@pytest.fixture(scope="module")
def public_docs(entries: dict[str, PrivateKeyEntry]) -> dict[str, dict[str, str]]:
    return {alg: public_jwk(entries[alg].verification_key()) for alg in ASYMMETRIC}


# --- Round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_private_jwk_round_trip_signs_the_same(
    alg: str, entries: dict[str, PrivateKeyEntry]
) -> None:
    entry = entries[alg]
    doc = private_jwk(entry)
    assert doc["kid"] == entry.kid
    assert doc["alg"] == alg
    assert doc["status"] == "active"
    parsed = parse_private_jwk(json.loads(json.dumps(doc)))
    assert (parsed.kid, parsed.alg, parsed.status) == (entry.kid, alg, KeyStatus.ACTIVE)
    assert private_jwk(parsed) == doc
    signature = LocalSigner(parsed).sign(b"header.payload")
    assert verifies(entry.verification_key(), b"header.payload", signature)
    assert not verifies(entry.verification_key(), b"header.payloaD", signature)


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_public_jwk_round_trip(alg: str, public_docs: dict[str, dict[str, str]]) -> None:
    doc = public_docs[alg]
    assert doc["use"] == "sig"
    assert doc["alg"] == alg
    assert not {"d", "p", "q", "dp", "dq", "qi", "k", "status"} & doc.keys()
    key = parse_public_jwk(doc)
    assert key.kid == doc["kid"] == jwk_thumbprint(doc)
    assert key.status is KeyStatus.ACTIVE
    assert public_jwk(key) == doc


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_generated_kid_is_the_rfc7638_thumbprint(
    alg: str, entries: dict[str, PrivateKeyEntry]
) -> None:
    entry = entries[alg]
    assert not isinstance(entry.key, bytes)
    assert entry.kid == key_thumbprint(entry.key.public_key())
    assert len(entry.kid) == 43


def test_rfc7638_thumbprint_vector() -> None:
    doc = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(doc) == RFC7638_THUMBPRINT
    key = parse_public_jwk(doc)
    assert not isinstance(key.key, bytes)
    assert key_thumbprint(key.key) == RFC7638_THUMBPRINT


def test_rfc8037_ed25519_thumbprint_vector() -> None:
    doc = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "alg": "EdDSA", "kid": "rfc8037"}
    assert jwk_thumbprint(doc) == RFC8037_THUMBPRINT
    key = parse_public_jwk(doc)
    assert not isinstance(key.key, bytes)
    assert key_thumbprint(key.key) == RFC8037_THUMBPRINT


def test_thumbprint_ignores_optional_members_and_refuses_symmetric_keys() -> None:
    bare = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
    assert jwk_thumbprint({**bare, "kid": "a", "use": "sig"}) == jwk_thumbprint(bare)
    with pytest.raises(InvalidKeyMaterial):
        jwk_thumbprint({"kty": "oct", "k": b64(bytes(32))})
    with pytest.raises(InvalidKeyMaterial, match="'x'"):
        jwk_thumbprint({"kty": "OKP", "crv": "Ed25519"})


def test_status_member_maps_to_key_status(public_docs: dict[str, dict[str, str]]) -> None:
    for status in KeyStatus:
        key = parse_public_jwk({**public_docs["ES256"], "status": status.value})
        assert key.status is status


def test_rsa_integers_with_leading_zero_octets_are_tolerated(
    public_docs: dict[str, dict[str, str]],
) -> None:
    doc = public_docs["RS256"]
    padded = {**doc, "n": b64(b"\x00" + unb64(doc["n"])), "e": b64(b"\x00" + unb64(doc["e"]))}
    assert parse_public_jwk(padded).key == parse_public_jwk(doc).key


def test_use_and_key_ops_when_well_formed_are_accepted(
    public_docs: dict[str, dict[str, str]], entries: dict[str, PrivateKeyEntry]
) -> None:
    parse_public_jwk({**public_docs["EdDSA"], "key_ops": ["verify"]})
    parse_private_jwk({**private_jwk(entries["EdDSA"]), "key_ops": ["sign", "verify"]})


# --- Refusals of public JWKs ------------------------------------------------------------------


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**doc, **changes}
    return {name: value for name, value in out.items() if value is not _DROP}


_DROP = object()


def _flip_last_bits(text: str) -> str:
    """The same bytes with non-zero unused bits in the last character: non-canonical."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


def _rsa_n(bits: int) -> str:
    # A syntactically fine modulus of the given size, not a real key (cheap to build).
    return b64(((1 << (bits - 1)) | 1 | 0xF00D << 16).to_bytes((bits + 7) // 8, "big"))


def _int(text: str) -> int:
    return int.from_bytes(unb64(text), "big")


def _xor_last_bit(text: str) -> str:
    data = unb64(text)
    return b64(data[:-1] + bytes([data[-1] ^ 1]))


Changes = dict[str, Any] | Callable[[dict[str, str]], dict[str, Any]]

# name: (alg of the base JWK, changes to it, what the message must name)
PUBLIC_REFUSALS: dict[str, tuple[str, Changes, str]] = {
    "kid missing": ("ES256", {"kid": _DROP}, "kid"),
    "kid empty": ("ES256", {"kid": ""}, "kid"),
    "kid not a string": ("ES256", {"kid": 7}, "kid"),
    "kid too long": ("ES256", {"kid": "a" * 129}, "kid"),
    "kid with slash": ("ES256", {"kid": "keys/a"}, "kid"),
    "kid with backslash": ("ES256", {"kid": "keys\\a"}, "kid"),
    "kid with dot-dot": ("ES256", {"kid": "a..b"}, "kid"),
    "kid with double quote": ("ES256", {"kid": 'a"b'}, "kid"),
    "kid with single quote": ("ES256", {"kid": "a'b"}, "kid"),
    "kid with newline": ("ES256", {"kid": "a\nb"}, "kid"),
    "kid with NUL": ("ES256", {"kid": "a\x00b"}, "kid"),
    "kid with space": ("ES256", {"kid": "a b"}, "kid"),
    "kid not ASCII": ("ES256", {"kid": "clé"}, "kid"),
    "alg missing": ("ES256", {"alg": _DROP}, "alg"),
    "alg none": ("ES256", {"alg": "none"}, "alg"),
    "alg ES384 on P-256": ("ES256", {"alg": "ES384"}, "alg"),
    "alg PS256 on RSA": ("RS256", {"alg": "PS256"}, "alg"),
    "alg HS256 on RSA": ("RS256", {"alg": "HS256"}, "alg"),
    "alg RS256 on EC": ("ES256", {"alg": "RS256"}, "alg"),
    "alg Ed25519 on OKP": ("EdDSA", {"alg": "Ed25519"}, "alg"),
    "kty missing": ("ES256", {"kty": _DROP}, "kty"),
    "kty unknown": ("ES256", {"kty": "EC2"}, "kty"),
    "kty oct": ("ES256", {"kty": "oct", "alg": "HS256", "k": b64(bytes(32))}, "oct"),
    "use enc": ("ES256", {"use": "enc"}, "use"),
    "key_ops without verify": ("ES256", {"key_ops": ["sign"]}, "key_ops"),
    "key_ops encrypt": ("ES256", {"key_ops": ["verify", "encrypt"]}, "key_ops"),
    "key_ops not a list": ("ES256", {"key_ops": "verify"}, "key_ops"),
    "key_ops duplicated": ("ES256", {"key_ops": ["verify", "verify"]}, "key_ops"),
    "status unknown": ("ES256", {"status": "revoked"}, "status"),
    "private member d": ("ES256", {"d": b64(bytes(31) + b"\x01")}, "private"),
    "private member p on RSA": ("RS256", {"p": "AQAB"}, "private"),
    "n padded": ("RS256", lambda d: {"n": d["n"] + "=="}, "'n'"),
    "n with plus": ("RS256", lambda d: {"n": "+" + d["n"][1:]}, "'n'"),
    "n with slash": ("RS256", lambda d: {"n": "/" + d["n"][1:]}, "'n'"),
    "n with whitespace": ("RS256", lambda d: {"n": d["n"][:8] + " " + d["n"][8:]}, "'n'"),
    "n with newline": ("RS256", lambda d: {"n": d["n"] + "\n"}, "'n'"),
    "n empty": ("RS256", {"n": ""}, "'n'"),
    "n not a string": ("RS256", {"n": 12345}, "'n'"),
    "n non-canonical": ("RS256", lambda d: {"n": _flip_last_bits(d["n"])}, "'n'"),
    "n of 1024 bits": ("RS256", {"n": _rsa_n(1024)}, "'n'"),
    "n of 2047 bits": ("RS256", {"n": _rsa_n(2047)}, "'n'"),
    "n above 8192 bits": ("RS256", {"n": _rsa_n(8200)}, "'n'"),
    "n even": ("RS256", lambda d: {"n": b64((_int(d["n"]) - 1).to_bytes(256, "big"))}, "'n'"),
    "e one": ("RS256", {"e": "AQ"}, "'e'"),
    "e even": ("RS256", {"e": "AAEAAA"}, "'e'"),
    "e huge": ("RS256", {"e": b64(b"\x01" * 33)}, "'e'"),
    "e missing": ("RS256", {"e": _DROP}, "'e'"),
    "crv P-384": ("ES256", {"crv": "P-384"}, "crv"),
    "crv missing": ("ES256", {"crv": _DROP}, "crv"),
    "x of 31 bytes": ("ES256", lambda d: {"x": b64(unb64(d["x"])[1:])}, "'x'"),
    "y of 33 bytes": ("ES256", lambda d: {"y": b64(b"\x00" + unb64(d["y"]))}, "'y'"),
    "y missing": ("ES256", {"y": _DROP}, "'y'"),
    "point off the curve": ("ES256", lambda d: {"y": _xor_last_bit(d["y"])}, "P-256"),
    "OKP crv X25519": ("EdDSA", {"crv": "X25519"}, "crv"),
    "OKP crv Ed448": ("EdDSA", {"crv": "Ed448"}, "crv"),
    "OKP x of 31 bytes": ("EdDSA", lambda d: {"x": b64(unb64(d["x"])[1:])}, "'x'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PUBLIC_REFUSALS))
def test_public_jwk_refusals_name_the_member_never_the_value(
    case: str, public_docs: dict[str, dict[str, str]]
) -> None:
    alg, changes, member = PUBLIC_REFUSALS[case]
    base = public_docs[alg]
    doc = _with(base, **(changes(base) if callable(changes) else changes))
    with pytest.raises(InvalidKeyMaterial) as caught:
        parse_public_jwk(doc)
    message = caught.value.message
    assert member in message
    for name, value in doc.items():
        if name != "kid" and isinstance(value, str) and len(value) > 12:
            assert value not in message
    # The same entry inside a JWKS refuses the whole document.
    with pytest.raises(InvalidKeyMaterial, match="key 1"):
        parse_jwks({"keys": [public_docs["EdDSA"], doc]})


def test_public_jwk_must_be_a_mapping() -> None:
    with pytest.raises(InvalidKeyMaterial):
        parse_public_jwk(["not", "a", "jwk"])  # type: ignore[arg-type]


def test_kid_rules() -> None:
    good = ("a", "rt-0123456789abcdef", RFC7638_THUMBPRINT, "-_", "2011-04-29", "k:1@x+y")
    for kid in (*good, "a" * 128):
        assert is_valid_kid(kid), kid
    bad = ("", "a" * 129, "../x", "x/y", "x\\y", "a..b", 'a"b', "a'b", "a`b", "a b", "a\tb", "é")
    for not_a_kid in (*bad, None, 5):
        assert not is_valid_kid(not_a_kid), not_a_kid


# --- Refusals of private JWKs -----------------------------------------------------------------


def test_private_parser_refuses_a_public_jwk(public_docs: dict[str, dict[str, str]]) -> None:
    for alg in ASYMMETRIC:
        with pytest.raises(InvalidKeyMaterial, match="'d'"):
            parse_private_jwk(public_docs[alg])


def test_private_rsa_with_inconsistent_members_is_refused(
    entries: dict[str, PrivateKeyEntry],
) -> None:
    doc = private_jwk(entries["RS256"])
    other = private_jwk(generate_key("RS256"))
    for member in ("d", "p", "dp", "qi"):
        with pytest.raises(InvalidKeyMaterial, match="inconsistent") as caught:
            parse_private_jwk({**doc, member: other[member]})
        assert doc[member] not in caught.value.message
        assert other[member] not in caught.value.message
    with pytest.raises(InvalidKeyMaterial, match="oth"):
        parse_private_jwk({**doc, "oth": []})
    with pytest.raises(InvalidKeyMaterial, match="'qi'"):
        parse_private_jwk(_with(doc, qi=_DROP))


def test_private_ec_and_ed25519_with_mismatched_d_are_refused(
    entries: dict[str, PrivateKeyEntry],
) -> None:
    for alg in ("ES256", "EdDSA"):
        doc = private_jwk(entries[alg])
        other = private_jwk(generate_key(alg))
        with pytest.raises(InvalidKeyMaterial, match="does not match"):
            parse_private_jwk({**doc, "d": other["d"]})
        with pytest.raises(InvalidKeyMaterial, match="'d'"):
            parse_private_jwk({**doc, "d": b64(unb64(doc["d"])[1:])})
    ec_doc = private_jwk(entries["ES256"])
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    with pytest.raises(InvalidKeyMaterial, match="'d'"):
        parse_private_jwk({**ec_doc, "d": b64(order.to_bytes(32, "big"))})


def test_private_oct_rules(entries: dict[str, PrivateKeyEntry]) -> None:
    doc = private_jwk(entries["HS256"])
    assert doc["kty"] == "oct"
    assert doc["kid"].startswith("rt-")
    with pytest.raises(InvalidKeyMaterial, match="'k'"):
        parse_private_jwk({**doc, "k": b64(bytes(31))})
    with pytest.raises(InvalidKeyMaterial, match="'k'"):
        parse_private_jwk({**doc, "k": ""})
    for alg in ("HS384", "HS512", "A256GCM", "A256KW"):
        with pytest.raises(InvalidKeyMaterial, match="alg"):
            parse_private_jwk({**doc, "alg": alg})
    with pytest.raises(InvalidKeyMaterial, match="key_ops"):
        parse_private_jwk({**doc, "key_ops": ["verify"]})
    # A 64-byte secret is fine: HMAC takes keys longer than its output.
    assert parse_private_jwk({**doc, "k": b64(bytes(range(64)))}).key == bytes(range(64))


def test_private_key_entry_checks_hand_built_entries(entries: dict[str, PrivateKeyEntry]) -> None:
    rsa_key = entries["RS256"].key
    assert not isinstance(rsa_key, bytes)
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("k", "ES256", rsa_key)
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("k", "HS256", bytes(16))
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("k", "RS256", bytes(32))
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("k", "none", bytes(32))
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("../k", "HS256", bytes(32))
    with pytest.raises(InvalidKeyMaterial):
        PrivateKeyEntry("k", "HS256", bytes(32), "active")  # type: ignore[arg-type]
    small = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidKeyMaterial, match="P-256"):
        PrivateKeyEntry("k", "ES256", small)


def test_reprs_hide_material(entries: dict[str, PrivateKeyEntry]) -> None:
    for alg in ALL_ALGS:
        entry = entries[alg]
        secret_members = {
            name: value
            for name, value in private_jwk(entry).items()
            if name in {"d", "p", "q", "dp", "dq", "qi", "k"}
        }
        assert secret_members
        texts = [repr(entry), str(entry), repr(entry.verification_key()), repr(LocalSigner(entry))]
        for text in texts:
            assert entry.kid in text
            for value in secret_members.values():
                assert value not in text
            assert "object at" not in text


# --- JWKS documents ---------------------------------------------------------------------------


def test_parse_jwks_accepts_a_document_of_every_algorithm(
    public_docs: dict[str, dict[str, str]],
) -> None:
    keys = parse_jwks({"keys": [public_docs[alg] for alg in ASYMMETRIC]})
    assert [key.alg for key in keys] == list(ASYMMETRIC)


def test_parse_jwks_refusals(public_docs: dict[str, dict[str, str]]) -> None:
    doc = public_docs["ES256"]
    with pytest.raises(InvalidKeyMaterial, match="more than once"):
        parse_jwks({"keys": [doc, doc]})
    with pytest.raises(InvalidKeyMaterial, match="keys"):
        parse_jwks({"keys": []})
    with pytest.raises(InvalidKeyMaterial, match="keys"):
        parse_jwks({"keys": doc})
    with pytest.raises(InvalidKeyMaterial, match="keys"):
        parse_jwks({})
    with pytest.raises(InvalidKeyMaterial, match="64"):
        parse_jwks({"keys": [{**doc, "kid": f"k{i}"} for i in range(65)]})
    with pytest.raises(InvalidKeyMaterial, match="key 0"):
        parse_jwks({"keys": ["not a jwk"]})


def test_parse_private_jwks_refuses_duplicates_and_public_entries(
    entries: dict[str, PrivateKeyEntry], public_docs: dict[str, dict[str, str]]
) -> None:
    doc = private_jwk(entries["HS256"])
    with pytest.raises(InvalidKeyMaterial, match="more than once"):
        parse_private_jwks({"keys": [doc, doc]})
    with pytest.raises(InvalidKeyMaterial, match="key 1"):
        parse_private_jwks({"keys": [doc, public_docs["ES256"]]})


def test_parse_json_document_is_strict() -> None:
    assert parse_json_document('{"keys": []}') == {"keys": []}
    bad = ('{"a": 1, "a": 2}', '{"a": NaN}', '{"a": Infinity}', "[1]", "{", '"text"', b"\xff")
    for text in bad:
        with pytest.raises(InvalidKeyMaterial):
            parse_json_document(text)
    with pytest.raises(InvalidKeyMaterial, match="not valid JSON"):
        parse_json_document("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidKeyMaterial, match="too large"):
        parse_json_document('{"a": "' + "x" * 300_000 + '"}')


def test_jwks_document_orders_by_status_and_never_publishes_hs256(
    entries: dict[str, PrivateKeyEntry],
) -> None:
    retired = generate_key("EdDSA", KeyStatus.RETIRED).verification_key()
    nxt = generate_key("ES256", KeyStatus.NEXT).verification_key()
    active = entries["ES256"].verification_key()
    secret = entries["HS256"].verification_key()
    assert secret.is_symmetric
    doc = jwks_document([retired, secret, nxt, active])
    assert [jwk["kid"] for jwk in doc["keys"]] == [active.kid, nxt.kid, retired.kid]
    published = json.dumps(doc)
    assert secret.kid not in published
    assert isinstance(secret.key, bytes)
    assert b64(secret.key) not in published
    assert jwks_document([secret]) == {"keys": []}
    for jwk in doc["keys"]:
        assert {"kty", "kid", "use", "alg"} <= jwk.keys()
        assert not {"d", "k", "status"} & jwk.keys()
    # What we publish, a standard JWKS reader (ours) parses back to the same keys.
    assert [key.kid for key in parse_jwks(doc)] == [active.kid, nxt.kid, retired.kid]


def test_jwks_document_refuses_duplicate_kids(entries: dict[str, PrivateKeyEntry]) -> None:
    key = entries["EdDSA"].verification_key()
    with pytest.raises(InvalidKeyMaterial):
        jwks_document([key, key])


def test_public_jwk_refuses_symmetric_and_mismatched_keys(
    entries: dict[str, PrivateKeyEntry],
) -> None:
    with pytest.raises(InvalidKeyMaterial, match="never published"):
        public_jwk(entries["HS256"].verification_key())
    rsa_public = entries["RS256"].verification_key().key
    assert isinstance(rsa_public, rsa.RSAPublicKey)
    with pytest.raises(InvalidKeyMaterial):
        public_jwk(VerificationKey(kid="k", alg="ES256", key=rsa_public))
    with pytest.raises(InvalidKeyMaterial):
        verification_key_for(rsa_public, "EdDSA")
    assert verification_key_for(rsa_public, "RS256").kid == entries["RS256"].kid


# --- Wycheproof json_web_key_test.json --------------------------------------------------------

# Valid vectors we refuse on purpose, with the reason.
WYCHEPROOF_JWK_DEVIATIONS = {
    14: "HS384 is refused: the only symmetric key we accept is the HS256 refresh-token key",
    15: "HS512 is refused: the only symmetric key we accept is the HS256 refresh-token key",
}
# Invalid vectors whose keys are fine: the refusal must come from the signature itself.
WYCHEPROOF_JWK_SIGNATURE_REFUSALS = {3}


def _group_keys(group: dict[str, Any]) -> dict[str, VerificationKey]:
    """The keys a verifier would hold: the public set if there is one, else the private set."""
    if "public" in group:
        keys = parse_jwks(group["public"])
    else:
        keys = [entry.verification_key() for entry in parse_private_jwks(group["private"])]
    return {key.kid: key for key in keys}


def _jws_verifies(token: str, keys: dict[str, VerificationKey]) -> bool:
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(unb64(header_b64))
    key = keys.get(header.get("kid"))
    if key is None or key.alg != header.get("alg"):
        return False
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return verifies(key, signing_input, unb64(signature_b64))


def _outcome(group: dict[str, Any], token: str) -> str:
    try:
        keys = _group_keys(group)
    except InvalidKeyMaterial:
        return "key refused"
    return "accepted" if _jws_verifies(token, keys) else "signature refused"


def test_wycheproof_json_web_key_vectors(vectors_dir: Path) -> None:
    data = json.loads((vectors_dir / "wycheproof" / "json_web_key_test.json").read_text())
    outcomes: dict[int, tuple[str, str]] = {}
    for group in data["testGroups"]:
        if "public" in group:
            # A public set and its private set are accepted or refused together.
            try:
                parse_jwks(group["public"])
                public_ok = True
            except InvalidKeyMaterial:
                public_ok = False
            try:
                parse_private_jwks(group["private"])
                private_ok = True
            except InvalidKeyMaterial:
                private_ok = False
            assert public_ok == private_ok, group["comment"]
        for case in group["tests"]:
            outcomes[case["tcId"]] = (case["result"], _outcome(group, case["jws"]))
    assert len(outcomes) == data["numberOfTests"] == 26

    mismatches = {}
    for tc_id, (result, outcome) in sorted(outcomes.items()):
        if tc_id in WYCHEPROOF_JWK_DEVIATIONS:
            assert result == "valid", tc_id  # a deviation is a valid vector we refuse
            expected = "key refused"
        elif result == "valid":
            expected = "accepted"
        elif tc_id in WYCHEPROOF_JWK_SIGNATURE_REFUSALS:
            expected = "signature refused"
        else:  # invalid and acceptable alike: the key set itself must be refused
            expected = "key refused"
        if outcome != expected:
            mismatches[tc_id] = (result, outcome)
    assert mismatches == {}
    assert sum(1 for _, outcome in outcomes.values() if outcome == "accepted") == 3


def test_wycheproof_roca_key_is_refused_for_roca(vectors_dir: Path) -> None:
    data = json.loads((vectors_dir / "wycheproof" / "json_web_key_test.json").read_text())
    group = next(g for g in data["testGroups"] if g["comment"] == "jws_rsa_roca_key")
    with pytest.raises(InvalidKeyMaterial, match="ROCA"):
        parse_jwks(group["public"])


def test_a_document_read_again_gives_the_same_keys_and_a_new_one_is_parsed(
    entries: dict[str, PrivateKeyEntry],
) -> None:
    from tokencore.keys.jwk import JwksDocumentParser

    parser = JwksDocumentParser("public JWKS parameter")
    first_doc = json.dumps(jwks_document([entries["RS256"].verification_key()]))
    second_doc = json.dumps(jwks_document([entries["ES256"].verification_key()]))
    first = parser.parse(first_doc)
    again = parser.parse(first_doc)
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))  # the very objects
    assert again is not first  # a new list: a caller may change its own
    second = parser.parse(second_doc)
    assert [key.alg for key in second] == ["ES256"]
    # A bad document is refused every time, and never replaces the last good one.
    broken = second_doc.replace('"keys": ', '"keys": [], "keys": ', 1)
    for _ in range(2):
        with pytest.raises(InvalidKeyMaterial, match="duplicate"):
            parser.parse(broken)
    assert all(a is b for a, b in zip(parser.parse(second_doc), second, strict=True))
