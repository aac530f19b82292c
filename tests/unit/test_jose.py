"""tokencore.jose: the algorithm registry is the only place that names an algorithm, every
allow-list derives from it, an algorithm is one entry; the codec raises its caller's errors;
keys/ and tokens/ build on jose/ and never on each other."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path
from typing import get_args

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from devserver.template import load_template
from tests.conftest import REPO_ROOT
from tokencore.config import ACCESS_ALGORITHMS, Settings
from tokencore.errors import (
    AlgorithmNotAllowed,
    ConfigError,
    InvalidKeyMaterial,
    InvalidSignature,
    MalformedToken,
)
from tokencore.http.errors import BadRequest
from tokencore.http.request import Request
from tokencore.jose.algorithms import (
    ALGORITHMS,
    DEFAULT_ACCESS_ALGORITHM,
    REFRESH_ALGORITHM,
    AccessAlgorithm,
    EcdsaAlgorithm,
    HmacAlgorithm,
    KeyPurpose,
    Registry,
)
from tokencore.jose.codec import b64url_decode, json_object
from tokencore.keys import VerificationKey, generate_key, parse_json_document

LAYER = REPO_ROOT / "layers" / "tokencore" / "tokencore"


def _es384(registry_purpose: KeyPurpose | None = "access") -> EcdsaAlgorithm:
    """What adding ES384 takes: this one entry (and its name in AccessAlgorithm)."""
    return EcdsaAlgorithm(
        "ES384",
        ec.SECP384R1(),
        "P-384",
        hashes.SHA384(),
        purpose=registry_purpose,
        kms_signing_algorithm="ECDSA_SHA_384",
        kms_key_specs=("ECC_NIST_P384",),
    )


# --- the registry and what derives from it -----------------------------------------------------


def test_access_algorithm_literal_and_settings_follow_the_registry() -> None:
    assert get_args(AccessAlgorithm) == ALGORITHMS.for_purpose("access")
    assert ALGORITHMS.for_purpose("access") == ACCESS_ALGORITHMS
    assert DEFAULT_ACCESS_ALGORITHM in ALGORITHMS.for_purpose("access")
    assert Settings().access_token_alg == DEFAULT_ACCESS_ALGORITHM
    assert ALGORITHMS.for_purpose("refresh") == (REFRESH_ALGORITHM,)
    # Disjoint, asymmetric for access, HMAC for refresh: what keeps the two kinds apart.
    assert not ALGORITHMS.allowed("access") & ALGORITHMS.allowed("refresh")
    assert not any(ALGORITHMS[name].symmetric for name in ALGORITHMS.for_purpose("access"))
    assert ALGORITHMS[REFRESH_ALGORITHM].symmetric


def test_the_template_offers_the_registrys_access_algorithms() -> None:
    parameter = load_template()["Parameters"]["AccessTokenAlg"]
    assert tuple(parameter["AllowedValues"]) == ALGORITHMS.for_purpose("access")
    assert parameter["Default"] == DEFAULT_ACCESS_ALGORITHM


def test_kms_settings_follow_the_registry() -> None:
    for name in ALGORITHMS.for_purpose("access"):
        env = {"KEY_BACKEND": "kms", "KMS_SIGNING_KEY_ID": "alias/k", "ACCESS_TOKEN_ALG": name}
        if ALGORITHMS[name].kms_signing_algorithm:
            assert Settings.from_env(env).access_token_alg == name
            spec = ALGORITHMS[name].kms_key_specs[0]
            assert ALGORITHMS.for_kms_key_spec(spec) is ALGORITHMS[name]
        else:
            with pytest.raises(ConfigError, match=f"ACCESS_TOKEN_ALG {name} is not available"):
                Settings.from_env(env)


def test_a_registry_refuses_a_name_twice_and_a_symmetric_access_algorithm() -> None:
    entries = list(ALGORITHMS)
    with pytest.raises(ValueError, match="twice"):
        Registry([*entries, entries[0]])
    hmac_for_access = HmacAlgorithm("HS384", "sha384", purpose="access")
    with pytest.raises(ValueError, match="purpose"):
        Registry([*entries, hmac_for_access])


def test_adding_an_algorithm_is_one_entry() -> None:
    """A registry with ES384 added: every derived allow-list, signing and verification,
    key checks and KMS lookups include it, with no other change; the real registry does not."""
    registry = Registry([*ALGORITHMS, _es384()])
    assert registry.for_purpose("access") == (*ALGORITHMS.for_purpose("access"), "ES384")
    assert "ES384" in registry.allowed("access")
    assert registry.for_key_set("ES384") is registry["ES384"]
    assert registry.for_kms_key_spec("ECC_NIST_P384") is registry["ES384"]
    assert registry.for_curve("secp384r1") is registry["ES384"]

    entry = registry["ES384"]
    private = entry.generate()
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    entry.check_private_key(private)
    key = VerificationKey(kid="es384", alg="ES384", key=private.public_key())
    signature = entry.sign(private, b"a.b")
    assert len(signature) == 96  # raw r || s, 48 bytes each
    registry.verify_signature(key, b"a.b", signature)
    with pytest.raises(InvalidSignature):
        registry.verify_signature(key, b"a.c", signature)
    # A P-256 key never passes for ES384, nor a P-384 key for ES256.
    with pytest.raises(InvalidKeyMaterial, match="P-384"):
        entry.check_public_key(generate_key("ES256").verification_key().key)
    with pytest.raises(InvalidKeyMaterial, match="P-256"):
        ALGORITHMS["ES256"].check_public_key(private.public_key())
    # The real registry knows nothing of it.
    assert "ES384" not in ALGORITHMS
    with pytest.raises(AlgorithmNotAllowed):
        ALGORITHMS.verify_signature(key, b"a.b", signature)


def test_an_added_algorithm_works_end_to_end() -> None:
    """The same entry put into the registry before anything else is imported: keys, key sets,
    JWKS, settings, minting and verification take ES384 with no change anywhere else."""
    code = textwrap.dedent(
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        import tokencore.jose.algorithms as algorithms

        algorithms.ALGORITHMS = algorithms.Registry([
            *algorithms.ALGORITHMS,
            algorithms.EcdsaAlgorithm(
                "ES384", ec.SECP384R1(), "P-384", hashes.SHA384(), purpose="access",
                kms_signing_algorithm="ECDSA_SHA_384", kms_key_specs=("ECC_NIST_P384",),
            ),
        ])

        from tokencore.config import Settings
        from tokencore.keys import KeySet, KmsSigner, StaticKeySource, generate_key
        from tokencore.keys import jwks_document, parse_jwks, parse_private_jwks
        from tokencore.keys import KeyRing
        from tests.clock import ManualClock
        from tokencore.tokens import AccessClaims, VerifyOptions
        from tokencore.tokens import mint_access_token, new_token_id, verify_access_token

        settings = Settings.from_env({"ACCESS_TOKEN_ALG": "ES384"})
        key_set = KeySet([generate_key("ES384")], "access")
        stored = KeySet.from_secret_document(key_set.to_secret_document(), "access")
        published = parse_jwks(jwks_document(stored.verification_keys()))
        assert [key.alg for key in published] == ["ES384"], published
        KmsSigner("alias/k", "ES384")
        claims = AccessClaims(
            issuer=settings.token_issuer, audience=settings.token_audience, subject="u",
            session_id="s", token_id=new_token_id(), issued_at=1_800_000_000,
            expires_at=1_800_000_900,
        )
        token = mint_access_token(stored.signer(), claims).token
        ring = KeyRing(StaticKeySource(published), ManualClock(1_800_000_000.0), 300, 10)
        verified = verify_access_token(
            token, ring, VerifyOptions.for_access(settings), 1_800_000_000.0
        )
        assert verified == claims, verified
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


# --- nothing outside jose/ names an algorithm --------------------------------------------------


def _production_files() -> list[Path]:
    files = sorted((REPO_ROOT / "functions").rglob("*.py")) + sorted(LAYER.rglob("*.py"))
    return [path for path in files if not path.is_relative_to(LAYER / "jose")]


def _string_literals(path: Path) -> list[tuple[int, str]]:
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    for token in tokens:
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                continue  # an f-string: its parts hold no algorithm name either (checked below)
            if isinstance(value, str):
                found.append((token.start[0], value))
    return found


def test_no_production_file_outside_jose_names_an_algorithm() -> None:
    files = _production_files()
    assert len(files) > 50, "the scan found too few files"
    names = ALGORITHMS.names
    named = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {value!r}"
        for path in files
        for line, value in _string_literals(path)
        if value in names or value.strip() in names
    ]
    assert not named, named


def test_the_name_scan_would_find_a_name() -> None:
    """Guards the scan itself."""
    sample = LAYER / "jose" / "algorithms.py"
    assert any(value == REFRESH_ALGORITHM for _, value in _string_literals(sample))


# --- the codec answers in its caller's terms ----------------------------------------------------


def test_the_codec_raises_the_callers_error() -> None:
    with pytest.raises(MalformedToken):
        b64url_decode("QQ==")
    with pytest.raises(KeyError, match="not canonical base64url"):
        b64url_decode("QR", KeyError)
    with pytest.raises(InvalidKeyMaterial, match="key document has a duplicate member"):
        parse_json_document('{"a": 1, "a": 2}')
    with pytest.raises(InvalidKeyMaterial, match="out of range"):
        parse_json_document('{"a": 1e400}')
    assert json_object('{"a": [1, 2.5]}', ValueError) == {"a": [1, 2.5]}


def _body(text: str) -> Request:
    return Request({"headers": {"content-type": "application/json"}, "body": text})


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": NaN}',
        '{"a": 1e400}',
        "[1]",
        '{"a": 1',
        '{"a":' * 20 + "1" + "}" * 20,
    ],
)
def test_the_http_body_parses_through_the_codec_and_stays_a_400(text: str) -> None:
    with pytest.raises(BadRequest):
        _body(text).json_body()


def test_the_http_body_keeps_its_depth_bound() -> None:
    assert "a" in _body('{"a": [[[[[[1]]]]]]}').json_body()
    with pytest.raises(BadRequest, match="nested too deeply"):
        _body('{"a": [[[[[[[[1]]]]]]]]}').json_body()


# --- what jose/ loads (its place in the layer order: tests/unit/test_imports.py) ----------------


def test_importing_jose_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import tokencore.jose.codec\n"
        "assert 'cryptography' not in sys.modules, 'codec loads cryptography'\n"
        "import tokencore.jose.algorithms\n"
        "heavy = ('boto3', 'botocore', 'argon2', 'jwt', "
        "'cryptography.hazmat.primitives.serialization', 'tokencore.keys', 'tokencore.tokens')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
