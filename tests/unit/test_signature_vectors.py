"""Wycheproof vectors against the SIGNATURE LAYER only.

Layer exercised: ``tokencore.jose.algorithms.verify_signature(key, message, signature)`` with a
``VerificationKey`` built from each test group's own key material (``publicKeyDer``). No JWS
parsing, header checks or claims are involved: Wycheproof's ``msg`` is passed as the signing
input and ``sig`` as the signature bytes, exactly as the verify path hands them over after it has
decoded a token.

* RS256  <- rsa_signature_2048_sha256_test.json (RSASSA-PKCS1-v1_5, SHA-256)
* ES256  <- ecdsa_secp256r1_sha256_p1363_test.json (raw ``r || s``, the JWS form)
* EdDSA  <- ed25519_test.json
* ES256 via DER <- ecdsa_secp256r1_sha256_test.json: each DER signature is converted with
  ``jose.algorithms.der_to_raw_ecdsa`` (what the KMS backend does with KMS's DER output) and the
  result is verified as above. A DER encoding the converter refuses counts as a rejection.

``valid`` must be accepted; ``invalid`` and ``acceptable`` must be rejected with a
``TokenRejected`` (``InvalidSignature`` for a signature that is merely wrong). Deliberate
deviations are listed per suite in ``{tcId: reason}`` and asserted to behave as listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.conftest import VECTORS_DIR
from tokencore.errors import InvalidSignature, TokenCoreError, TokenRejected
from tokencore.jose.algorithms import der_to_raw_ecdsa, verify_signature
from tokencore.keys.model import VerificationKey

RSA_FILE = "rsa_signature_2048_sha256_test.json"
P1363_FILE = "ecdsa_secp256r1_sha256_p1363_test.json"
ED25519_FILE = "ed25519_test.json"
DER_FILE = "ecdsa_secp256r1_sha256_test.json"

# Deliberate deviations: {tcId: reason}. Each is a ``valid`` vector we reject on purpose (an
# ``invalid`` one we accepted would be a vulnerability, never a deviation).
RSA_DEVIATIONS: dict[int, str] = {}
P1363_DEVIATIONS: dict[int, str] = {}
ED25519_DEVIATIONS: dict[int, str] = {}
DER_DEVIATIONS: dict[int, str] = {}


@cache
def _load(directory: Path, name: str) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """tcId -> (group, test) of one Wycheproof file."""
    document = json.loads((directory / "wycheproof" / name).read_text(encoding="utf-8"))
    cases = {
        test["tcId"]: (group, test) for group in document["testGroups"] for test in group["tests"]
    }
    assert len(cases) == document["numberOfTests"], f"{name}: tcIds are not unique"
    return cases


def _tc_ids(name: str) -> list[int]:
    """The tcIds for parametrization, read at collection time. If the vectors are missing, one
    placeholder case is collected so that the ``vectors_dir`` fixture fails it loudly instead
    of the suite collecting nothing and passing."""
    if not (VECTORS_DIR / "wycheproof" / name).is_file():
        return [0]
    return sorted(_load(VECTORS_DIR, name))


def _key(group: dict[str, Any], alg: str) -> VerificationKey:
    public_key = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    return VerificationKey(kid="wycheproof", alg=alg, key=public_key)  # type: ignore[arg-type]


def _outcome(verify: Callable[[], None]) -> TokenRejected | None:
    """None if accepted, else the rejection. Anything outside the error tree fails the test."""
    try:
        verify()
    except TokenRejected as exc:
        return exc
    return None


def _check(
    test: dict[str, Any], rejection: TokenRejected | None, deviations: dict[int, str]
) -> None:
    tc_id, result = test["tcId"], test["result"]
    context = f"tcId {tc_id} ({result}, {test['comment']!r}, flags {test['flags']})"
    if tc_id in deviations:
        assert result == "valid", f"deviation listed for a non-valid vector: {context}"
        assert rejection is not None, f"listed deviation now verifies, drop it: {context}"
        return
    if result == "valid":
        assert rejection is None, f"valid signature rejected ({rejection!r}): {context}"
    else:
        assert rejection is not None, f"{result} signature accepted: {context}"


def _run_raw(
    vectors_dir: Path, name: str, alg: str, tc_id: int, deviations: dict[int, str]
) -> None:
    group, test = _load(vectors_dir, name)[tc_id]
    key = _key(group, alg)
    message, signature = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    rejection = _outcome(lambda: verify_signature(key, message, signature))
    _check(test, rejection, deviations)
    if rejection is not None and signature:
        # A well-typed key and a non-empty signature: the only honest answer is "bad signature".
        assert isinstance(rejection, InvalidSignature), repr(rejection)


@pytest.mark.parametrize("tc_id", _tc_ids(RSA_FILE), ids=str)
def test_rs256(vectors_dir: Path, tc_id: int) -> None:
    _run_raw(vectors_dir, RSA_FILE, "RS256", tc_id, RSA_DEVIATIONS)


@pytest.mark.parametrize("tc_id", _tc_ids(P1363_FILE), ids=str)
def test_es256_p1363(vectors_dir: Path, tc_id: int) -> None:
    _run_raw(vectors_dir, P1363_FILE, "ES256", tc_id, P1363_DEVIATIONS)


@pytest.mark.parametrize("tc_id", _tc_ids(ED25519_FILE), ids=str)
def test_eddsa(vectors_dir: Path, tc_id: int) -> None:
    _run_raw(vectors_dir, ED25519_FILE, "EdDSA", tc_id, ED25519_DEVIATIONS)


def _der_to_raw_or_refusal(der: bytes) -> bytes | Exception:
    """The converter's answer: raw ``r || s``, or the exception with which it refused."""
    try:
        return der_to_raw_ecdsa(der, 32)
    except (ValueError, TokenCoreError) as exc:
        return exc


@pytest.mark.parametrize("tc_id", _tc_ids(DER_FILE), ids=str)
def test_es256_der_through_converter(vectors_dir: Path, tc_id: int) -> None:
    group, test = _load(vectors_dir, DER_FILE)[tc_id]
    key = _key(group, "ES256")
    message = bytes.fromhex(test["msg"])
    raw = _der_to_raw_or_refusal(bytes.fromhex(test["sig"]))
    if isinstance(raw, Exception):
        # A refusal by the converter is a rejection (the KMS backend would raise, not sign).
        rejection: TokenRejected | None = InvalidSignature(f"converter refused: {raw!r}")
    else:
        assert len(raw) == 64, "the converter must produce exactly 2 x 32 bytes for P-256"
        rejection = _outcome(lambda: verify_signature(key, message, raw))
    _check(test, rejection, DER_DEVIATIONS)


@pytest.mark.parametrize(
    ("name", "deviations"),
    [
        (RSA_FILE, RSA_DEVIATIONS),
        (P1363_FILE, P1363_DEVIATIONS),
        (ED25519_FILE, ED25519_DEVIATIONS),
        (DER_FILE, DER_DEVIATIONS),
    ],
)
def test_suite_is_complete_and_deviations_are_real(
    vectors_dir: Path, name: str, deviations: dict[int, str]
) -> None:
    cases = _load(vectors_dir, name)
    assert sorted(cases) == _tc_ids(name)
    results = {test["result"] for _, test in cases.values()}
    assert "valid" in results
    assert "invalid" in results
    for tc_id, reason in deviations.items():
        assert tc_id in cases, f"deviation for unknown tcId {tc_id}"
        assert reason.strip(), f"deviation {tc_id} needs a reason"


def test_a_valid_vector_fails_with_another_groups_key(vectors_dir: Path) -> None:
    """Guards the harness itself: the key really comes from the group (not e.g. any key)."""
    cases = _load(vectors_dir, P1363_FILE)
    groups = {id(group): group for group, _ in cases.values()}
    assert len(groups) > 1
    first, second = list(groups.values())[:2]
    test = next(t for t in first["tests"] if t["result"] == "valid")
    with pytest.raises(InvalidSignature):
        verify_signature(
            _key(second, "ES256"), bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
        )
