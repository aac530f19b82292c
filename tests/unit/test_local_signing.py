"""LocalSigner, generate_key (keys.local) and der_to_raw_ecdsa (jose.algorithms)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from tokencore.errors import InvalidKeyMaterial, KeyUnavailable
from tokencore.jose.algorithms import Signer, der_to_raw_ecdsa
from tokencore.keys import (
    KeyStatus,
    LocalSigner,
    PrivateKeyEntry,
    generate_key,
    key_thumbprint,
)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SIGNING_INPUT = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0"


@pytest.fixture(scope="module")
def entries() -> dict[str, PrivateKeyEntry]:
    return {alg: generate_key(alg) for alg in ("RS256", "ES256", "EdDSA", "HS256")}


def _raw_to_der(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


# --- LocalSigner ------------------------------------------------------------------------------


def test_rs256_is_pkcs1v15_sha256(entries: dict[str, PrivateKeyEntry]) -> None:
    entry = entries["RS256"]
    signer: Signer = LocalSigner(entry)
    assert (signer.kid, signer.alg) == (entry.kid, "RS256")
    signature = signer.sign(SIGNING_INPUT)
    public = entry.verification_key().key
    assert isinstance(public, rsa.RSAPublicKey)
    assert len(signature) == 256
    public.verify(signature, SIGNING_INPUT, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, SIGNING_INPUT + b"x", padding.PKCS1v15(), hashes.SHA256())
    # PKCS#1 v1.5 is deterministic: the same input gives the same signature.
    assert signer.sign(SIGNING_INPUT) == signature


def test_es256_is_raw_r_s_of_64_bytes(entries: dict[str, PrivateKeyEntry]) -> None:
    entry = entries["ES256"]
    signer = LocalSigner(entry)
    public = entry.verification_key().key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for _ in range(20):  # ECDSA is randomized; short r or s must still be padded to 32 bytes
        signature = signer.sign(SIGNING_INPUT)
        assert len(signature) == 64
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        assert 0 < r < P256_ORDER
        assert 0 < s < P256_ORDER
        public.verify(_raw_to_der(signature), SIGNING_INPUT, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(_raw_to_der(signature), b"other", ec.ECDSA(hashes.SHA256()))


def test_eddsa_is_ed25519(entries: dict[str, PrivateKeyEntry]) -> None:
    entry = entries["EdDSA"]
    signature = LocalSigner(entry).sign(SIGNING_INPUT)
    public = entry.verification_key().key
    assert isinstance(public, Ed25519PublicKey)
    assert len(signature) == 64
    public.verify(signature, SIGNING_INPUT)
    with pytest.raises(InvalidSignature):
        public.verify(signature, SIGNING_INPUT[:-1])


def test_hs256_is_hmac_sha256(entries: dict[str, PrivateKeyEntry]) -> None:
    entry = entries["HS256"]
    assert isinstance(entry.key, bytes)
    signature = LocalSigner(entry).sign(SIGNING_INPUT)
    assert signature == hmac.new(entry.key, SIGNING_INPUT, hashlib.sha256).digest()
    assert signature != hmac.new(bytes(32), SIGNING_INPUT, hashlib.sha256).digest()


# --- generate_key -----------------------------------------------------------------------------


def test_generate_key_types_and_kids(entries: dict[str, PrivateKeyEntry]) -> None:
    assert isinstance(entries["RS256"].key, rsa.RSAPrivateKey)
    assert entries["RS256"].key.key_size == 2048
    assert entries["RS256"].key.public_key().public_numbers().e == 65537
    assert isinstance(entries["ES256"].key, ec.EllipticCurvePrivateKey)
    assert isinstance(entries["ES256"].key.curve, ec.SECP256R1)
    for alg in ("RS256", "ES256", "EdDSA"):
        key = entries[alg].key
        assert not isinstance(key, bytes)
        assert entries[alg].kid == key_thumbprint(key.public_key())
    hs = entries["HS256"]
    assert isinstance(hs.key, bytes)
    assert len(hs.key) == 32
    assert re.fullmatch(r"rt-[0-9a-f]{16}", hs.kid)
    other = generate_key("HS256")
    assert other.kid != hs.kid
    assert other.key != hs.key


def test_generate_key_status_and_refusals() -> None:
    assert generate_key("EdDSA", "next").status is KeyStatus.NEXT
    assert generate_key("HS256", KeyStatus.RETIRED).status is KeyStatus.RETIRED
    with pytest.raises(InvalidKeyMaterial, match="status"):
        generate_key("EdDSA", "revoked")
    for alg in ("HS512", "PS256", "none", "ES384"):
        with pytest.raises(InvalidKeyMaterial, match="alg"):
            generate_key(alg)
    for bits in (1024, 2047, 8193):
        with pytest.raises(InvalidKeyMaterial, match="rsa_bits"):
            generate_key("RS256", rsa_bits=bits)


# --- der_to_raw_ecdsa -------------------------------------------------------------------------


def _der_int(value_bytes: bytes) -> bytes:
    return b"\x02" + bytes([len(value_bytes)]) + value_bytes


def _seq(body: bytes) -> bytes:
    return b"\x30" + bytes([len(body)]) + body


def test_der_to_raw_pads_and_strips_sign_octets() -> None:
    high = b"\x00" + b"\x80" + bytes(31)  # 2**255: needs a leading 0x00 in DER
    der = _seq(_der_int(high) + _der_int(b"\x01"))
    assert der_to_raw_ecdsa(der) == b"\x80" + bytes(31) + bytes(31) + b"\x01"
    assert (
        der_to_raw_ecdsa(_seq(_der_int(b"\x05") + _der_int(b"\x07")), size=2) == b"\x00\x05\x00\x07"
    )


MALFORMED_DER = {
    "empty": b"",
    "not a sequence": b"\x31\x06\x02\x01\x01\x02\x01\x01",
    "truncated": _seq(_der_int(b"\x01") + _der_int(b"\x01"))[:-1],
    "trailing byte": _seq(_der_int(b"\x01") + _der_int(b"\x01")) + b"\x00",
    "extra element": _seq(_der_int(b"\x01") + _der_int(b"\x01") + _der_int(b"\x01")),
    "one element": _seq(_der_int(b"\x01")),
    "indefinite length": b"\x30\x80\x02\x01\x01\x02\x01\x01\x00\x00",
    "long-form short length": b"\x30\x81\x06\x02\x01\x01\x02\x01\x01",
    "long-form integer length": b"\x30\x07\x02\x81\x01\x01\x02\x01\x01",
    "wrong integer tag": _seq(b"\x03\x01\x01" + _der_int(b"\x01")),
    "empty integer": _seq(b"\x02\x00" + _der_int(b"\x01")),
    "negative r": _seq(_der_int(b"\x80") + _der_int(b"\x01")),
    "non-minimal r": _seq(_der_int(b"\x00\x01") + _der_int(b"\x01")),
    "zero r": _seq(_der_int(b"\x00") + _der_int(b"\x01")),
    "zero s": _seq(_der_int(b"\x01") + _der_int(b"\x00")),
    "r of 33 bytes": _seq(_der_int(b"\x01" + bytes(32)) + _der_int(b"\x01")),
    "integer longer than sequence": b"\x30\x06\x02\x09\x01\x02\x01\x01\x00\x00",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_DER))
def test_der_to_raw_refuses_malformed_der(case: str) -> None:
    with pytest.raises(KeyUnavailable):
        der_to_raw_ecdsa(MALFORMED_DER[case])


def test_der_to_raw_refuses_a_non_positive_size() -> None:
    with pytest.raises(KeyUnavailable):
        der_to_raw_ecdsa(_seq(_der_int(b"\x01") + _der_int(b"\x01")), size=0)


@given(
    r=st.integers(min_value=1, max_value=2**256 - 1),
    s=st.integers(min_value=1, max_value=2**256 - 1),
)
def test_der_to_raw_inverts_encode_dss_signature(r: int, s: int) -> None:
    raw = der_to_raw_ecdsa(encode_dss_signature(r, s))
    assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")


# Vectors where we differ from Wycheproof's verdict, with the reason. None today: every valid
# DER signature converts and verifies, and every invalid one is refused or fails to verify.
WYCHEPROOF_ECDSA_DEVIATIONS: dict[int, str] = {}


def test_wycheproof_ecdsa_p256_der_signatures(vectors_dir: Path) -> None:
    """Signature-encoding layer: DER (as KMS returns it) -> JWS r||s -> verifies."""
    data = json.loads((vectors_dir / "wycheproof" / "ecdsa_secp256r1_sha256_test.json").read_text())
    counts = {"valid": 0, "refused by converter": 0, "failed to verify": 0}
    mismatches = {}
    for group in data["testGroups"]:
        public = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
        assert isinstance(public, ec.EllipticCurvePublicKey)
        for case in group["tests"]:
            try:
                raw = der_to_raw_ecdsa(bytes.fromhex(case["sig"]))
            except KeyUnavailable:
                outcome = "refused by converter"
            else:
                assert len(raw) == 64
                try:
                    public.verify(
                        _raw_to_der(raw), bytes.fromhex(case["msg"]), ec.ECDSA(hashes.SHA256())
                    )
                    outcome = "valid"
                except InvalidSignature:
                    outcome = "failed to verify"
            counts[outcome] += 1
            accepted = outcome == "valid"
            expected = case["result"] == "valid" and case["tcId"] not in WYCHEPROOF_ECDSA_DEVIATIONS
            if accepted != expected:
                mismatches[case["tcId"]] = (case["result"], outcome, case["comment"])
    assert mismatches == {}
    assert sum(counts.values()) == data["numberOfTests"]
    assert counts["valid"] > 150  # the valid vectors really were converted and verified
    assert counts["refused by converter"] > 200


def test_wycheproof_ber_and_missing_zero_are_refused_by_the_converter(vectors_dir: Path) -> None:
    data = json.loads((vectors_dir / "wycheproof" / "ecdsa_secp256r1_sha256_test.json").read_text())
    cases = [
        case
        for group in data["testGroups"]
        for case in group["tests"]
        if {"BerEncodedSignature", "MissingZero"} & set(case["flags"])
    ]
    assert len(cases) == 8
    for case in cases:
        with pytest.raises(KeyUnavailable):
            der_to_raw_ecdsa(bytes.fromhex(case["sig"]))
