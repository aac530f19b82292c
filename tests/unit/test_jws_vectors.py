"""Public JWS vectors against the WHOLE VERIFY PATH at the JWS level.

Layer exercised: ``tokencore.tokens.verify_jws(token, keys)`` with its default options, i.e.
the string checks, the strict base64url and JSON codec, the header allow-list, the algorithm
allow-list, the kid grammar, the key lookup, the alg/key binding and the signature layer. The
payloads are not JWT claim sets, so the claim checks (``verify_access_token`` and
``verify_refresh_token``) are deliberately not involved here.

Keys come from the vectors' own JWKs, parsed by ``tokencore.keys.jwk`` exactly as a key set
would be (public JWK for asymmetric keys, private ``oct`` JWK for HS256). A key our strict
parser refuses is simply absent from the lookup.

* wycheproof/json_web_signature_test.json: ``valid`` -> accepted, ``invalid`` -> rejected, with
  every deliberate deviation listed below with its reason and asserted to fail (or pass) with
  the specific error.
* jose-cookbook (RFC 7520) jws_4_1 RS256, jws_4_3 ES512, jws_4_4 HS256 and curve25519_jws
  Ed25519: positive vectors that must verify with their published key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import VECTORS_DIR
from tokencore.errors import (
    AlgorithmNotAllowed,
    InvalidKeyMaterial,
    InvalidSignature,
    MalformedToken,
    TokenRejected,
    UnknownKey,
    UnsupportedHeader,
)
from tokencore.jose.algorithms import verify_signature
from tokencore.jose.codec import b64url_decode
from tokencore.keys import jwk
from tokencore.keys.model import VerificationKey
from tokencore.tokens import verify_jws

JWS_FILE = "json_web_signature_test.json"

_UNSUPPORTED_ALG = "algorithm not supported by tokencore (only RS256, ES256, EdDSA, HS256)"
_EMPTY_PAYLOAD = "empty payload segment: a compact JWS we verify always carries a JSON payload"
_P521 = "P-521 key with 'alg': 'ES521' (sic): our strict JWK parser binds EC keys to P-256/ES256"

# Deliberate deviations, {tcId: (reason, expected outcome)}. The outcome is the error class the
# whole path must raise, or None where we accept what the vector calls invalid.
DEVIATIONS: dict[int, tuple[str, type[TokenRejected] | None]] = {
    # RSA keys with an empty payload: rejected for the empty payload before anything else.
    259: (_EMPTY_PAYLOAD, MalformedToken),
    264: (_EMPTY_PAYLOAD + "; also RS384", MalformedToken),
    268: (_EMPTY_PAYLOAD + "; also RS512", MalformedToken),
    272: (_EMPTY_PAYLOAD + "; also PS256", MalformedToken),
    320: (_EMPTY_PAYLOAD + "; also PS384", MalformedToken),
    325: (_EMPTY_PAYLOAD + "; also PS512", MalformedToken),
    # RS384 / RS512 / PS256 / PS384 / PS512 (the keys are refused by keys.jwk too).
    **dict.fromkeys(
        (265, 266, 267, 269, 270, 271, 273, 274, 275, 287, 288, 321, 322, 323, 326, 327, 328),
        (_UNSUPPORTED_ALG, AlgorithmNotAllowed),
    ),
    346: (_UNSUPPORTED_ALG + " (RFC 7520 Figure 20, PS384)", AlgorithmNotAllowed),
    350: (_UNSUPPORTED_ALG + " (RFC 7520 Figure 20, PS384, key_ops)", AlgorithmNotAllowed),
    # ES512 is known to the signature layer, so the header passes; the key is not in the set.
    347: (_P521 + " (RFC 7520 Figure 27)", UnknownKey),
    351: (_P521 + " (RFC 7520 Figure 27, key_ops)", UnknownKey),
    # Wycheproof calls these valid: a '?' inside a segment that lenient decoders skip. We accept
    # the base64url alphabet only (RFC 7515 §2, RFC 4648 §5), before any decoding.
    372: ("'?' inserted in the header segment; strict base64url alphabet", MalformedToken),
    373: ("'?' inserted in the payload segment; strict base64url alphabet", MalformedToken),
    # Defects of the vector file: the token strings are byte-for-byte identical to the valid
    # tcId 357 (the padding the comment names is not in the string), so accepting them is right.
    # The padded forms are refused in tests/security/test_token_attacks_encoding.py.
    367: ("vector defect: identical to valid tcId 357, no padding present", None),
    370: ("vector defect: identical to valid tcId 357, no padding present", None),
}
_IDENTICAL_TO_357 = (367, 370)

# Invalid vectors whose rejection reason is worth pinning (all others: any TokenRejected).
EXPECTED_REJECTION: dict[int, type[TokenRejected]] = {
    16: MalformedToken,  # alg none with an empty signature: not a compact JWS we accept
    17: MalformedToken,  # JSON serialization, not compact
    31: AlgorithmNotAllowed,  # HS256 with the EC public key bytes as the secret
    32: UnsupportedHeader,  # attacker-provided embedded jwk
    2: InvalidSignature,
    19: InvalidSignature,
    34: InvalidSignature,
    5: InvalidSignature,
    22: InvalidSignature,
    37: InvalidSignature,
    8: UnknownKey,  # modified kid
    25: UnknownKey,
    40: UnknownKey,
    **dict.fromkeys(range(386, 402), InvalidSignature),  # r, s in {0, 1, n-1, n}
    361: MalformedToken,
    362: MalformedToken,
    363: MalformedToken,
    364: MalformedToken,
    374: InvalidSignature,  # non-zero unused bits in the payload: the MAC no longer matches
    375: MalformedToken,  # a correct MAC over a non-canonical payload: still refused
}


class _GroupKeys:
    """The keys of one test group, looked up by kid like a KeyRing."""

    def __init__(self, keys: list[VerificationKey]) -> None:
        self._keys = {key.kid: key for key in keys}
        self.calls: list[str] = []

    def get(self, kid: str) -> VerificationKey:
        self.calls.append(kid)
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKey("unknown kid") from None


def _parse_group_key(group: dict[str, Any]) -> VerificationKey | InvalidKeyMaterial:
    """The group's key as our parser sees it: public JWK if there is one, else the private
    JWK (only ``oct`` groups have no public key), or the parser's refusal."""
    try:
        if "public" in group:
            return jwk.parse_public_jwk(group["public"])
        return jwk.parse_private_jwk(group["private"]).verification_key()
    except InvalidKeyMaterial as exc:
        return exc


@cache
def _load(directory: Path) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    document = json.loads((directory / "wycheproof" / JWS_FILE).read_text(encoding="utf-8"))
    cases = {
        test["tcId"]: (group, test) for group in document["testGroups"] for test in group["tests"]
    }
    assert len(cases) == document["numberOfTests"] == 401
    return cases


def _tc_ids() -> list[int]:
    if not (VECTORS_DIR / "wycheproof" / JWS_FILE).is_file():
        return [0]  # the vectors_dir fixture fails this one case loudly
    return sorted(_load(VECTORS_DIR))


def _verify(token: object, keys: _GroupKeys) -> TokenRejected | None:
    try:
        verify_jws(token, keys)
    except TokenRejected as exc:
        return exc
    return None


@pytest.mark.parametrize("tc_id", _tc_ids(), ids=str)
def test_wycheproof_jws(vectors_dir: Path, tc_id: int) -> None:
    group, test = _load(vectors_dir)[tc_id]
    parsed = _parse_group_key(group)
    keys = _GroupKeys([parsed] if isinstance(parsed, VerificationKey) else [])
    token = test["jws"]
    rejection = _verify(token, keys)
    context = f"tcId {tc_id} ({test['result']}, {test['comment']!r})"

    if tc_id in DEVIATIONS:
        reason, expected = DEVIATIONS[tc_id]
        if expected is None:
            assert rejection is None, f"{context}: listed as accepted ({reason}): {rejection!r}"
        else:
            assert test["result"] == "valid", f"{context}: deviation on a non-valid vector"
            assert isinstance(rejection, expected), f"{context}: {reason}: got {rejection!r}"
        return

    if test["result"] == "valid":
        assert rejection is None, f"{context}: valid token rejected: {rejection!r}"
    else:
        assert rejection is not None, f"{context}: {test['result']} token accepted"
        if tc_id in EXPECTED_REJECTION:
            expected_class = EXPECTED_REJECTION[tc_id]
            assert isinstance(rejection, expected_class), f"{context}: got {rejection!r}"
    if not isinstance(token, str) or token.count(".") != 2 or "jwk" in _header_names(token):
        # Never a key lookup for something that is not a compact JWS or carries its own key.
        assert keys.calls == [], f"{context}: key looked up for {keys.calls}"


def _header_names(token: str) -> set[str]:
    try:
        return set(json.loads(b64url_decode(token.split(".")[0])))
    except Exception:
        return set()


def test_wycheproof_deviations_are_real(vectors_dir: Path) -> None:
    cases = _load(vectors_dir)
    for tc_id, (reason, _) in DEVIATIONS.items():
        assert tc_id in cases, tc_id
        assert reason
    for tc_id in EXPECTED_REJECTION:
        assert cases[tc_id][1]["result"] == "invalid", tc_id
    # The two "invalid" vectors we accept really are the valid tcId 357, character for character.
    valid_357 = cases[357][1]
    assert valid_357["result"] == "valid"
    for tc_id in _IDENTICAL_TO_357:
        assert cases[tc_id][1]["jws"] == valid_357["jws"]
        assert cases[tc_id][1]["result"] == "invalid"
    # Every valid vector is either accepted or a listed deviation (no silent skips).
    valid = {tc_id for tc_id, (_, test) in cases.items() if test["result"] == "valid"}
    assert len(valid) == 46
    assert len(valid - DEVIATIONS.keys()) == 46 - 29


@pytest.mark.parametrize(
    ("group_comment", "tc_id"),
    [("rsa_encryption", 353), ("ec_key_for_encryption", 354)],
)
def test_wycheproof_wrong_use_keys_are_refused_for_their_use_not_only_for_a_missing_alg(
    vectors_dir: Path, group_comment: str, tc_id: int
) -> None:
    """These groups' JWKs lack 'alg', which our parser refuses first; give them the alg their
    token names and the parser must still refuse them for 'use': 'enc' / encryption key_ops."""
    group, test = _load(vectors_dir)[tc_id]
    assert group["comment"] == group_comment
    for document in (group["public"], group["private"]):
        with pytest.raises(InvalidKeyMaterial):
            jwk.parse_public_jwk(document)
    alg = json.loads(b64url_decode(test["jws"].split(".")[0]))["alg"]
    with pytest.raises(InvalidKeyMaterial, match=r"use|key_ops"):
        jwk.parse_public_jwk({**group["public"], "alg": alg})


def test_wycheproof_wrong_key_ops_are_refused_with_the_alg_added(vectors_dir: Path) -> None:
    for tc_id in (355, 356):
        group, test = _load(vectors_dir)[tc_id]
        alg = json.loads(b64url_decode(test["jws"].split(".")[0]))["alg"]
        with pytest.raises(InvalidKeyMaterial, match="key_ops"):
            jwk.parse_public_jwk({**group["public"], "alg": alg})


# --- RFC 7520 (jose-cookbook) --------------------------------------------------------------


def _cookbook(vectors_dir: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (vectors_dir / "jose-cookbook" / name).read_text(encoding="utf-8")
    )
    return document


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _public_part(key: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in key.items() if name not in _PRIVATE_MEMBERS}


def _single(key: VerificationKey) -> _GroupKeys:
    return _GroupKeys([key])


def test_cookbook_4_1_rs256(vectors_dir: Path) -> None:
    vector = _cookbook(vectors_dir, "jws_4_1.rsa_v15_signature.json")
    key_doc = vector["input"]["key"]
    # The cookbook gives the algorithm beside the key ("input.alg"), not in the JWK; our parser
    # binds every key to one alg and requires it, so it is added from the vector.
    assert "alg" not in key_doc
    key = jwk.parse_public_jwk({**_public_part(key_doc), "alg": vector["input"]["alg"]})
    assert key.alg == "RS256"
    verified = verify_jws(vector["output"]["compact"], _single(key))
    assert verified.payload.decode("utf-8") == vector["input"]["payload"]
    assert verified.header == vector["signing"]["protected"]
    # The private JWK parses too and yields the same verification key.
    entry = jwk.parse_private_jwk({**key_doc, "alg": "RS256"})
    verify_jws(vector["output"]["compact"], _single(entry.verification_key()))


def test_cookbook_4_3_es512_with_a_p521_key_built_directly(vectors_dir: Path) -> None:
    vector = _cookbook(vectors_dir, "jws_4_3.ecdsa_signature.json")
    key_doc = vector["input"]["key"]
    # keys.jwk binds EC keys to P-256/ES256 and refuses P-521: said and asserted here.
    with pytest.raises(InvalidKeyMaterial):
        jwk.parse_public_jwk({**_public_part(key_doc), "alg": "ES512"})
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(key_doc["x"]), "big"),
        int.from_bytes(b64url_decode(key_doc["y"]), "big"),
        ec.SECP521R1(),
    )
    key = VerificationKey(kid=key_doc["kid"], alg="ES512", key=numbers.public_key())
    verified = verify_jws(vector["output"]["compact"], _single(key))
    assert verified.payload.decode("utf-8") == vector["input"]["payload"]
    assert verified.header == {"alg": "ES512", "kid": key_doc["kid"]}
    # The P-521 key bound to ES512 can never verify an access token (ES512 is not allowed there).
    with pytest.raises(AlgorithmNotAllowed):
        verify_jws(
            vector["output"]["compact"], _single(key), algorithms={"RS256", "ES256", "EdDSA"}
        )


def test_cookbook_4_4_hs256(vectors_dir: Path) -> None:
    vector = _cookbook(vectors_dir, "jws_4_4.hmac-sha2_integrity_protection.json")
    entry = jwk.parse_private_jwk(vector["input"]["key"])
    assert entry.alg == "HS256"
    verified = verify_jws(vector["output"]["compact"], _single(entry.verification_key()))
    assert verified.payload.decode("utf-8") == vector["input"]["payload"]


def test_cookbook_curve25519_eddsa(vectors_dir: Path) -> None:
    vector = _cookbook(vectors_dir, "curve25519_jws.json")
    key_doc = vector["input"]["key"]
    # The published JWK has neither kid nor alg, and our parser requires both: add them.
    key = jwk.parse_public_jwk({**_public_part(key_doc), "alg": "EdDSA", "kid": "rfc8037"})
    compact = vector["output"]["compact"]
    header_segment, payload_segment, signature_segment = compact.split(".")
    # Deviation: the token's header is {"alg":"EdDSA"} with no kid, and verify_jws requires a
    # kid (every token we mint has one; we never guess a key). So the untouched token is
    # refused before any lookup...
    assert vector["signing"]["protected"] == {"alg": "EdDSA"}
    keys = _single(key)
    with pytest.raises(UnknownKey):
        verify_jws(compact, keys)
    assert keys.calls == []
    # ...and the vector is proven one layer down, with the same key and the exact signing input
    # the verify path would pass.
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    assert signing_input.decode() == vector["signing"]["sig-input"]
    verify_signature(key, signing_input, b64url_decode(signature_segment))
    assert b64url_decode(payload_segment).decode() == vector["input"]["payload"]
    with pytest.raises(InvalidSignature):
        verify_signature(key, signing_input + b"x", b64url_decode(signature_segment))
