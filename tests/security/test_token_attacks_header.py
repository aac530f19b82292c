"""Attacks on token verification through the header: alg none, algorithm confusion, kid,
header injection. How the tokens are built and what each case asserts: token_kit.py."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.security.conftest import KeyLookup, Keys
from tests.security.token_kit import (
    ACCESS,
    DROP,
    NOW,
    REFRESH,
    access_claims,
    access_token,
    forge,
    header_of,
    parts,
    refresh_claims,
    segment,
)
from tokencore.errors import (
    AlgorithmNotAllowed,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
)
from tokencore.jose.codec import b64url_encode
from tokencore.keys.jwk import PrivateKeyEntry, public_jwk
from tokencore.keys.local import LocalSigner
from tokencore.tokens import (
    ACCESS_TYP,
    REFRESH_TYP,
    verify_access_token,
    verify_jws,
    verify_refresh_token,
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Records (and blocks) any attempt to resolve or connect: a jku/x5u must never be fetched."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> Any:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert attempts == [], "verification touched the network"


# --- alg none ----------------------------------------------------------------------------


NONE_CASINGS = ["none", "None", "NONE", "nOnE"]


class TestAlgNone:
    @pytest.mark.parametrize("alg", NONE_CASINGS)
    def test_none_with_empty_signature(self, keys: Keys, access_keys: KeyLookup, alg: str) -> None:
        token = forge(header_of(keys.rs256, alg=alg), access_claims(), signature=b"")
        assert token.endswith(".")
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)
        with pytest.raises(MalformedToken):
            verify_jws(token, access_keys)
        assert access_keys.calls == []

    @pytest.mark.parametrize("alg", NONE_CASINGS)
    def test_none_with_a_signature(self, keys: Keys, access_keys: KeyLookup, alg: str) -> None:
        # Signature bytes from our real key over the same input: still refused for the alg.
        real = access_token(keys.rs256)
        token = forge(header_of(keys.rs256, alg=alg), access_claims(), signature=b"x")
        for candidate in (token, f"{parts(token)[0]}.{parts(token)[1]}.{parts(real)[2]}"):
            with pytest.raises(AlgorithmNotAllowed):
                verify_access_token(candidate, access_keys, ACCESS, NOW)
            with pytest.raises(AlgorithmNotAllowed):
                verify_jws(candidate, access_keys)
        assert access_keys.calls == []

    @pytest.mark.parametrize("alg", NONE_CASINGS)
    def test_none_as_refresh_token(self, keys: Keys, refresh_keys: KeyLookup, alg: str) -> None:
        token = forge(
            header_of(keys.refresh, REFRESH_TYP, alg=alg), refresh_claims(), signature=b"x"
        )
        with pytest.raises(AlgorithmNotAllowed):
            verify_refresh_token(token, refresh_keys, REFRESH, NOW)

    def test_none_without_kid(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = forge({"alg": "none", "typ": ACCESS_TYP}, access_claims(), signature=b"\x00")
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, access_keys, ACCESS, NOW)


# --- algorithm confusion -------------------------------------------------------------------


def _rsa_public_encodings(entry: PrivateKeyEntry) -> dict[str, bytes]:
    public = entry.verification_key().key
    assert not isinstance(public, bytes)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "pem": pem,
        "pem-no-trailing-newline": pem.rstrip(b"\n"),
        "pem-pkcs1": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "der-spki": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der-pkcs1": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        ),
        "jwk-json": json.dumps(public_jwk(entry.verification_key())).encode(),
        "jwk-json-compact": json.dumps(
            public_jwk(entry.verification_key()), separators=(",", ":"), sort_keys=True
        ).encode(),
    }


ENCODINGS = [
    "pem",
    "pem-no-trailing-newline",
    "pem-pkcs1",
    "der-spki",
    "der-pkcs1",
    "jwk-json",
    "jwk-json-compact",
]


class TestAlgorithmConfusion:
    @pytest.mark.parametrize("encoding", ENCODINGS)
    def test_rs256_public_key_as_hmac_secret(
        self, keys: Keys, access_keys: KeyLookup, all_keys: KeyLookup, encoding: str
    ) -> None:
        secret = _rsa_public_encodings(keys.rs256)[encoding]
        token = forge(header_of(keys.rs256, alg="HS256"), access_claims(), secret=secret)
        # The access path never runs HMAC at all...
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, access_keys, ACCESS, NOW)
        # ...and where HS256 is allowed, the key's own binding (RS256) decides.
        with pytest.raises(AlgorithmNotAllowed):
            verify_jws(token, access_keys)
        refresh_shaped = forge(
            header_of(keys.rs256, REFRESH_TYP, alg="HS256"), refresh_claims(), secret=secret
        )
        with pytest.raises(AlgorithmNotAllowed):
            verify_refresh_token(refresh_shaped, all_keys, REFRESH, NOW)

    def test_ec_public_key_as_hmac_secret(self, keys: Keys, access_keys: KeyLookup) -> None:
        public = keys.es256.verification_key().key
        assert isinstance(public, ec.EllipticCurvePublicKey)
        for secret in (
            public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ),
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ):
            token = forge(header_of(keys.es256, alg="HS256"), access_claims(), secret=secret)
            with pytest.raises(AlgorithmNotAllowed):
                verify_access_token(token, access_keys, ACCESS, NOW)
            with pytest.raises(AlgorithmNotAllowed):
                verify_jws(token, access_keys)

    @pytest.mark.parametrize(
        ("signer_attr", "claimed_alg"),
        [("rs256", "ES256"), ("es256", "RS256"), ("eddsa", "ES256"), ("rs256", "EdDSA")],
    )
    def test_header_alg_other_than_the_keys_binding(
        self, keys: Keys, access_keys: KeyLookup, signer_attr: str, claimed_alg: str
    ) -> None:
        entry: PrivateKeyEntry = getattr(keys, signer_attr)
        token = forge(header_of(entry, alg=claimed_alg), access_claims(), signer=LocalSigner(entry))
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize(
        "alg",
        ["rs256", "Rs256", "RS256 ", " RS256", "RS256\u0000", "RS256\u200b", "RS512", "RS384",
         "PS256", "ES384", "ES512", "HS512", "HS384", "EdDSA25519", "Ed25519", "", "*"],
    )  # fmt: skip
    def test_unknown_or_disguised_alg(self, keys: Keys, access_keys: KeyLookup, alg: str) -> None:
        token = forge(
            header_of(keys.rs256, alg=alg), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    @pytest.mark.parametrize("alg", [None, 256, ["RS256"], {"name": "RS256"}, True, DROP])
    def test_alg_not_a_string_or_missing(
        self, keys: Keys, access_keys: KeyLookup, alg: object
    ) -> None:
        token = forge(
            header_of(keys.rs256, alg=alg), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, access_keys, ACCESS, NOW)


# --- kid -----------------------------------------------------------------------------------


HOSTILE_KIDS = {
    "path-traversal": "../../etc/passwd",
    "absolute-path": "/dev/null",
    "dot-dot-inside": "k1/../../k2",
    "dot-dot-no-slash": "a..b",
    "sql-injection": "' OR 1=1 --",
    "nul": "k1\u0000",
    "backticks": "`id`",
    "newline-log-injection": "k1\nlevel=admin",
    "url": "https://evil.example/jwks.json",
    "empty": "",
    "space": "k 1",
    "full-width": "\uff4b1",
    "too-long": "k" * 129,
}


class TestKid:
    def test_unknown_kid_is_looked_up_and_refused(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = forge(
            header_of(keys.rs256, kid="no-such-key"),
            access_claims(),
            signer=LocalSigner(keys.rs256),
        )
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == ["no-such-key"]

    @pytest.mark.parametrize("kid", HOSTILE_KIDS.values(), ids=HOSTILE_KIDS.keys())
    def test_hostile_kid_never_reaches_the_key_lookup(
        self, keys: Keys, access_keys: KeyLookup, kid: str
    ) -> None:
        token = forge(
            header_of(keys.rs256, kid=kid), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    @pytest.mark.parametrize("kid", ["$(id)", "k1;rm", "<k1>", "k|1", "k&1"])
    def test_shell_metacharacter_kid_is_only_ever_an_unknown_kid(
        self, keys: Keys, access_keys: KeyLookup, kid: str
    ) -> None:
        """The kid grammar (jose.codec.is_valid_kid, shared with key loading) admits printable
        ASCII other than quotes, slashes and backslashes, so these reach the lookup, exactly as
        given and never interpreted; no key has such a kid, so the answer is UnknownKey."""
        token = forge(
            header_of(keys.rs256, kid=kid), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls in ([], [kid])

    def test_one_megabyte_kid(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = forge(header_of(keys.rs256, kid="k" * 1_000_000), access_claims(), signature=b"s")
        with pytest.raises(TokenTooLarge):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    @pytest.mark.parametrize("kid", [None, 1, ["k"], {"kid": "k"}, True, DROP])
    def test_kid_not_a_string_or_missing(
        self, keys: Keys, access_keys: KeyLookup, kid: object
    ) -> None:
        token = forge(
            header_of(keys.rs256, kid=kid), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    def test_kid_of_128_characters_is_looked_up(self, keys: Keys, access_keys: KeyLookup) -> None:
        kid = "k" * 128
        token = forge(
            header_of(keys.rs256, kid=kid), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == [kid]


# --- header injection ----------------------------------------------------------------------


def _self_signed_certificate(entry: PrivateKeyEntry) -> bytes:
    key = entry.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokencore")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


class TestHeaderInjection:
    """The attacker's own key, embedded or linked, must be refused before any use."""

    @pytest.fixture
    def attacker(self, keys: Keys) -> PrivateKeyEntry:
        return keys.attacker_es256

    def _injected(self, attacker: PrivateKeyEntry, kid: str) -> dict[str, dict[str, Any]]:
        certificate = _self_signed_certificate(attacker)
        return {
            "jku": {"jku": "https://evil.example/.well-known/jwks.json"},
            "jku-localhost": {"jku": "http://127.0.0.1:1/jwks.json"},
            "x5u": {"x5u": "https://evil.example/cert.pem"},
            "x5c": {"x5c": [base64.b64encode(certificate).decode("ascii")]},
            "x5t": {"x5t": b64url_encode(hashlib.sha1(certificate).digest())},  # noqa: S324
            "x5t#S256": {"x5t#S256": b64url_encode(hashlib.sha256(certificate).digest())},
            "jwk": {"jwk": {**public_jwk(attacker.verification_key()), "kid": kid}},
        }

    @pytest.mark.parametrize(
        "name", ["jku", "jku-localhost", "x5u", "x5c", "x5t", "x5t#S256", "jwk"]
    )
    @pytest.mark.parametrize("kid_owner", ["ours", "attackers"])
    def test_attacker_key_embedded_or_linked(
        self,
        keys: Keys,
        access_keys: KeyLookup,
        attacker: PrivateKeyEntry,
        no_network: list[object],
        name: str,
        kid_owner: str,
    ) -> None:
        kid = keys.es256.kid if kid_owner == "ours" else attacker.kid
        extra = self._injected(attacker, kid)[name]
        token = forge(
            header_of(attacker, kid=kid, **extra), access_claims(), signer=LocalSigner(attacker)
        )
        with pytest.raises(UnsupportedHeader):
            verify_access_token(token, access_keys, ACCESS, NOW)
        with pytest.raises(UnsupportedHeader):
            verify_jws(token, access_keys)
        assert access_keys.calls == []

    @pytest.mark.parametrize(
        "extra",
        [
            {"crit": ["exp"]},
            {"crit": ["x-unknown"], "x-unknown": True},
            {"crit": []},
            {"crit": ["b64"], "b64": False},
            {"b64": False},
            {"b64": True},
            {"cty": "JWT"},
            {"zip": "DEF"},
            {"enc": "A256GCM"},
            {"epk": {}},
            {"x-custom": 1},
            {"Alg": "none"},
        ],
        ids=lambda extra: ",".join(extra),
    )
    def test_unsupported_parameters(
        self, keys: Keys, access_keys: KeyLookup, extra: dict[str, Any]
    ) -> None:
        token = forge(
            header_of(keys.rs256, **extra), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(UnsupportedHeader):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    def test_b64_false_with_an_unencoded_payload(self, keys: Keys, access_keys: KeyLookup) -> None:
        # RFC 7797: the signing input would be the raw payload; we never get that far.
        header = header_of(keys.rs256, b64=False, crit=["b64"])
        payload = json.dumps(access_claims(), separators=(",", ":"))
        signing_input = f"{segment(header)}.{payload}".encode()
        signature = b64url_encode(LocalSigner(keys.rs256).sign(signing_input))
        for token in (
            f"{segment(header)}.{payload}.{signature}",
            f"{segment(header)}..{signature}",
        ):
            with pytest.raises(MalformedToken):
                verify_access_token(token, access_keys, ACCESS, NOW)
        detached_but_encoded = forge(header, access_claims(), signer=LocalSigner(keys.rs256))
        with pytest.raises(UnsupportedHeader):
            verify_access_token(detached_but_encoded, access_keys, ACCESS, NOW)
