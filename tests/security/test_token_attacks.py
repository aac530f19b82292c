"""Attacks on token verification, grouped by category.

Every token here is built by hand (``forge``) from explicit header and payload dicts or raw
bytes, so each attack is visible in the test. Each case asserts the specific ``TokenRejected``
subclass; the property tests at the end assert that nothing outside ``tokencore.errors`` ever
escapes and that a mutated token never verifies.

Layer exercised: the public entry points ``verify_access_token`` / ``verify_refresh_token``
(and ``verify_jws`` where the attack is below the claims), with keys generated at test time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import KeyLookup, Keys
from tokencore.config import Settings
from tokencore.errors import (
    AlgorithmNotAllowed,
    ExpiredToken,
    InvalidClaim,
    InvalidSignature,
    MalformedToken,
    MissingClaim,
    TokenCoreError,
    TokenNotYetValid,
    TokenRejected,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
    WrongTokenType,
)
from tokencore.jose.algorithms import verify_signature
from tokencore.jose.codec import b64url_decode, b64url_encode
from tokencore.keys.jwk import PrivateKeyEntry, public_jwk
from tokencore.keys.local import LocalSigner
from tokencore.keys.model import VerificationKey
from tokencore.tokens import (
    ACCESS_TYP,
    MAX_TOKEN_LENGTH,
    REFRESH_TYP,
    VerifyOptions,
    verify_access_token,
    verify_jws,
    verify_refresh_token,
)

NOW = 1_800_000_000
ISSUER = "https://auth.example.com"
AUDIENCE = "tokencore-api"
SETTINGS = Settings(token_issuer=ISSUER, token_audience=AUDIENCE)
LEEWAY = SETTINGS.clock_skew_leeway_seconds
ACCESS = VerifyOptions.for_access(SETTINGS)
REFRESH = VerifyOptions.for_refresh(SETTINGS)
# The order of the P-256 group (SEC 2 / FIPS 186-4).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

DROP = object()  # a claim value meaning "leave this claim out"
Part = Mapping[str, Any] | bytes


# --- building tokens by hand ---------------------------------------------------------------


def segment(part: Part) -> str:
    """base64url of a dict's compact JSON, or of raw bytes exactly as given."""
    raw = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return b64url_encode(raw)


def forge(
    header: Part,
    payload: Part,
    *,
    signer: LocalSigner | None = None,
    secret: bytes | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact JWS: signed by ``signer``, or HMAC-SHA256 with ``secret``, or carrying the
    given raw ``signature`` bytes (b"" gives an empty third segment)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    if signature is None:
        if signer is not None:
            signature = signer.sign(signing_input.encode("ascii"))
        elif secret is not None:
            signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        else:
            raise ValueError("forge needs a signer, a secret or a signature")
    return f"{signing_input}.{b64url_encode(signature)}"


def header_of(entry: PrivateKeyEntry, typ: object = ACCESS_TYP, **extra: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": entry.alg, "kid": entry.kid, "typ": typ}
    header.update(extra)
    return {name: value for name, value in header.items() if value is not DROP}


def _apply(claims: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def access_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "jti-1",
        "iat": NOW,
        "exp": NOW + 900,
        "token_use": "access",
        "roles": ["user"],
    }
    return _apply(claims, changes)


def refresh_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "rt-1",
        "iat": NOW,
        "exp": NOW + 3600,
        "token_use": "refresh",
        "gen": 0,
    }
    return _apply(claims, changes)


def access_token(entry: PrivateKeyEntry, **changes: Any) -> str:
    return forge(header_of(entry), access_claims(**changes), signer=LocalSigner(entry))


def refresh_token(entry: PrivateKeyEntry, **changes: Any) -> str:
    return forge(
        header_of(entry, REFRESH_TYP), refresh_claims(**changes), signer=LocalSigner(entry)
    )


def parts(token: str) -> list[str]:
    return token.split(".")


def with_signature(token: str, signature: bytes) -> str:
    header, payload, _ = parts(token)
    return f"{header}.{payload}.{b64url_encode(signature)}"


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


# --- tampering -----------------------------------------------------------------------------


ACCESS_ALGS = ["rs256", "es256", "eddsa"]


def _flip_bit(data: bytes, bit: int) -> bytes:
    mutable = bytearray(data)
    mutable[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutable)


class TestTampering:
    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_tampered_payload(self, keys: Keys, access_keys: KeyLookup, alg: str) -> None:
        entry: PrivateKeyEntry = getattr(keys, alg)
        original = access_token(entry)
        verify_access_token(original, access_keys, ACCESS, NOW)
        header, _, signature = parts(original)
        for forged_claims in (
            access_claims(roles=["admin"]),
            access_claims(sub="user-2"),
            access_claims(exp=NOW + 10**6),
        ):
            tampered = f"{header}.{segment(forged_claims)}.{signature}"
            with pytest.raises(InvalidSignature):
                verify_access_token(tampered, access_keys, ACCESS, NOW)

    def test_tampered_refresh_payload(self, keys: Keys, refresh_keys: KeyLookup) -> None:
        header, _, signature = parts(refresh_token(keys.refresh))
        tampered = f"{header}.{segment(refresh_claims(gen=7))}.{signature}"
        with pytest.raises(InvalidSignature):
            verify_refresh_token(tampered, refresh_keys, REFRESH, NOW)

    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_tampered_header(self, keys: Keys, access_keys: KeyLookup, alg: str) -> None:
        entry: PrivateKeyEntry = getattr(keys, alg)
        _, payload, signature = parts(access_token(entry))
        # Same meaning, different bytes: member order and typ spelling.
        for header in (
            {"kid": entry.kid, "alg": entry.alg, "typ": ACCESS_TYP},
            header_of(entry, typ="application/at+jwt"),
        ):
            with pytest.raises(InvalidSignature):
                verify_access_token(
                    f"{segment(header)}.{payload}.{signature}", access_keys, ACCESS, NOW
                )

    @pytest.mark.parametrize("alg", [*ACCESS_ALGS, "refresh"])
    @pytest.mark.parametrize("where", ["first", "middle", "last"])
    def test_flipped_signature_bit(self, keys: Keys, alg: str, where: str) -> None:
        entry: PrivateKeyEntry = getattr(keys, alg)
        lookup = KeyLookup(entry.verification_key())
        token = refresh_token(entry) if alg == "refresh" else access_token(entry)
        signature = b64url_decode(parts(token)[2])
        bit = {"first": 0, "middle": len(signature) * 4, "last": len(signature) * 8 - 1}[where]
        tampered = with_signature(token, _flip_bit(signature, bit))
        verify = verify_refresh_token if alg == "refresh" else verify_access_token
        options = REFRESH if alg == "refresh" else ACCESS
        verify(token, lookup, options, NOW)
        with pytest.raises(InvalidSignature):
            verify(tampered, lookup, options, NOW)

    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_truncated_extended_and_spliced_signatures(
        self, keys: Keys, access_keys: KeyLookup, alg: str
    ) -> None:
        entry: PrivateKeyEntry = getattr(keys, alg)
        token = access_token(entry)
        signature = b64url_decode(parts(token)[2])
        other = b64url_decode(parts(access_token(entry, jti="jti-2"))[2])
        for forged in (signature[:-1], signature + b"\x00", b"\x00" + signature, other):
            with pytest.raises(InvalidSignature):
                verify_access_token(with_signature(token, forged), access_keys, ACCESS, NOW)

    def test_empty_signature(self, keys: Keys, access_keys: KeyLookup) -> None:
        header, payload, _ = parts(access_token(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(f"{header}.{payload}.", access_keys, ACCESS, NOW)
        # Below the string check, the signature layer refuses an empty signature too.
        with pytest.raises(InvalidSignature):
            verify_signature(keys.rs256.verification_key(), f"{header}.{payload}".encode(), b"")

    @pytest.mark.parametrize(
        "shape",
        ["{h}.{p}", "{h}.{p}.{s}.", "{h}.{p}.{s}.{s}", "{h}..{s}", ".{p}.{s}",
         "{h}.{p}.{s}.{p}.{s}", "{p}.{s}", "{h}", ""],
    )  # fmt: skip
    def test_stripped_or_extra_segments(
        self, keys: Keys, access_keys: KeyLookup, shape: str
    ) -> None:
        h, p, s = parts(access_token(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(shape.format(h=h, p=p, s=s), access_keys, ACCESS, NOW)
        assert access_keys.calls == []


# --- time claims ---------------------------------------------------------------------------


class TestTimeClaims:
    """Leeway semantics: valid while now < exp + leeway; nbf and iat may be up to leeway ahead."""

    def test_leeway_is_the_contract_default(self) -> None:
        assert LEEWAY == 30
        assert ACCESS.leeway_seconds == REFRESH.leeway_seconds == 30

    @pytest.mark.parametrize("kind", ["access", "refresh"])
    def test_exp_just_inside_and_just_outside(self, keys: Keys, kind: str) -> None:
        exp = NOW + 600
        lookup = KeyLookup(keys.rs256.verification_key(), keys.refresh.verification_key())

        def verify(now: float) -> None:
            if kind == "access":
                verify_access_token(access_token(keys.rs256, exp=exp), lookup, ACCESS, now)
            else:
                verify_refresh_token(refresh_token(keys.refresh, exp=exp), lookup, REFRESH, now)

        verify(exp - 1)
        verify(exp)
        verify(exp + LEEWAY - 1)
        verify(exp + LEEWAY - 0.001)
        for now in (exp + LEEWAY, exp + LEEWAY + 0.5, exp + 10**6):
            with pytest.raises(ExpiredToken):
                verify(now)

    @pytest.mark.parametrize("claim", ["nbf", "iat"])
    @pytest.mark.parametrize("kind", ["access", "refresh"])
    def test_future_nbf_and_iat_just_inside_and_just_outside(
        self, keys: Keys, claim: str, kind: str
    ) -> None:
        def token_at(when: int) -> str:
            if kind == "access":
                return access_token(keys.rs256, **{claim: when})
            return refresh_token(keys.refresh, **{claim: when})

        lookup = KeyLookup(keys.rs256.verification_key(), keys.refresh.verification_key())
        verify = verify_access_token if kind == "access" else verify_refresh_token
        options = ACCESS if kind == "access" else REFRESH
        verify(token_at(NOW + LEEWAY), lookup, options, NOW)
        verify(token_at(NOW + LEEWAY), lookup, options, NOW + 0.5)
        with pytest.raises(TokenNotYetValid):
            verify(token_at(NOW + LEEWAY + 1), lookup, options, NOW)
        with pytest.raises(TokenNotYetValid):
            verify(token_at(NOW + 3600), lookup, options, NOW)

    def test_an_expired_token_stays_expired_whatever_its_iat(
        self, keys: Keys, access_keys: KeyLookup
    ) -> None:
        token = access_token(keys.rs256, iat=NOW - 10_000, exp=NOW - LEEWAY)
        with pytest.raises(ExpiredToken):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("exp", [0, -1, NOW - 10**9])
    def test_exp_in_the_distant_past(self, keys: Keys, access_keys: KeyLookup, exp: int) -> None:
        with pytest.raises(ExpiredToken):
            verify_access_token(access_token(keys.rs256, exp=exp), access_keys, ACCESS, NOW)

    def test_fractional_exp_is_floored(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = access_token(keys.rs256, exp=NOW + 0.9)
        verify_access_token(token, access_keys, ACCESS, NOW + LEEWAY - 0.5)
        with pytest.raises(ExpiredToken):
            verify_access_token(token, access_keys, ACCESS, NOW + LEEWAY)


# --- issuer and audience -------------------------------------------------------------------


class TestIssuerAudience:
    @pytest.mark.parametrize(
        "iss",
        [ISSUER + "/", ISSUER.upper(), "https://evil.example.com", "http://auth.example.com",
         "", [ISSUER], None, 1],
    )  # fmt: skip
    def test_wrong_issuer(self, keys: Keys, access_keys: KeyLookup, iss: object) -> None:
        with pytest.raises(InvalidClaim):
            verify_access_token(access_token(keys.rs256, iss=iss), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize(
        "aud",
        ["other-api", AUDIENCE.upper(), AUDIENCE + " ", "", ["other-api"], ["other-api", "x"], [],
         [AUDIENCE, 1], [[AUDIENCE]], None, {"aud": AUDIENCE}, 1, ISSUER],
    )  # fmt: skip
    def test_wrong_audience(self, keys: Keys, access_keys: KeyLookup, aud: object) -> None:
        with pytest.raises(InvalidClaim):
            verify_access_token(access_token(keys.rs256, aud=aud), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("aud", [[AUDIENCE], ["other-api", AUDIENCE], [AUDIENCE, AUDIENCE]])
    def test_audience_list_containing_ours(
        self, keys: Keys, access_keys: KeyLookup, aud: list[str]
    ) -> None:
        claims = verify_access_token(access_token(keys.rs256, aud=aud), access_keys, ACCESS, NOW)
        assert claims.audience == AUDIENCE

    def test_refresh_audience_is_the_issuer(self, keys: Keys, refresh_keys: KeyLookup) -> None:
        with pytest.raises(InvalidClaim):
            verify_refresh_token(
                refresh_token(keys.refresh, aud=AUDIENCE), refresh_keys, REFRESH, NOW
            )
        with pytest.raises(InvalidClaim):
            verify_refresh_token(
                refresh_token(keys.refresh, iss="https://evil"), refresh_keys, REFRESH, NOW
            )


# --- required and mistyped claims ----------------------------------------------------------


ACCESS_REQUIRED = ["iss", "aud", "sub", "jti", "sid", "iat", "exp", "token_use"]


class TestRequiredClaims:
    @pytest.mark.parametrize("claim", ACCESS_REQUIRED)
    def test_access_claim_missing(self, keys: Keys, access_keys: KeyLookup, claim: str) -> None:
        with pytest.raises(MissingClaim):
            verify_access_token(access_token(keys.rs256, **{claim: DROP}), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("claim", [*ACCESS_REQUIRED, "gen"])
    def test_refresh_claim_missing(self, keys: Keys, refresh_keys: KeyLookup, claim: str) -> None:
        token = refresh_token(keys.refresh, **{claim: DROP})
        with pytest.raises(MissingClaim):
            verify_refresh_token(token, refresh_keys, REFRESH, NOW)

    def test_empty_claims_object(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = forge(header_of(keys.rs256), {}, signer=LocalSigner(keys.rs256))
        with pytest.raises(MissingClaim):
            verify_access_token(token, access_keys, ACCESS, NOW)


class TestMistypedClaims:
    @pytest.mark.parametrize(
        ("claim", "value"),
        [
            ("exp", "1800000000"),
            ("exp", str(NOW + 900)),
            ("exp", True),
            ("exp", None),
            ("exp", [NOW + 900]),
            ("exp", {"$numberLong": str(NOW + 900)}),
            ("iat", "now"),
            ("iat", False),
            ("nbf", None),
            ("nbf", "0"),
            ("sub", 1),
            ("sub", ""),
            ("sub", None),
            ("sub", ["user-1"]),
            ("sub", "u" * 257),
            ("jti", 7),
            ("sid", {"id": "sess-1"}),
            ("roles", "admin"),
            ("roles", {"admin": True}),
            ("roles", [1]),
            ("roles", [""]),
            ("roles", ["r" * 65]),
            ("roles", [["admin"]]),
            ("roles", ["r"] * 65),
            ("roles", None),
            ("email", 1),
            ("email", ["a@example.com"]),
            ("fgp", {"hash": "x"}),
            ("acr", 2),
        ],
        ids=lambda value: str(value)[:20],
    )
    def test_access_claim_of_the_wrong_type(
        self, keys: Keys, access_keys: KeyLookup, claim: str, value: object
    ) -> None:
        with pytest.raises(InvalidClaim):
            verify_access_token(
                access_token(keys.rs256, **{claim: value}), access_keys, ACCESS, NOW
            )

    @pytest.mark.parametrize("token_use", ["Access", "refresh", "id", "", None, ["access"]])
    def test_token_use_other_than_access(
        self, keys: Keys, access_keys: KeyLookup, token_use: object
    ) -> None:
        token = access_token(keys.rs256, token_use=token_use)
        with pytest.raises(WrongTokenType):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("gen", ["1", True, False, -1, 1.0, 1.5, [1], {"gen": 1}])
    def test_refresh_generation_of_the_wrong_type(
        self, keys: Keys, refresh_keys: KeyLookup, gen: object
    ) -> None:
        with pytest.raises(InvalidClaim):
            verify_refresh_token(refresh_token(keys.refresh, gen=gen), refresh_keys, REFRESH, NOW)

    def test_refresh_generation_null_counts_as_missing(
        self, keys: Keys, refresh_keys: KeyLookup
    ) -> None:
        # Unlike "exp": null (InvalidClaim), "gen": null is read as absent. Both are refused.
        with pytest.raises(MissingClaim):
            verify_refresh_token(refresh_token(keys.refresh, gen=None), refresh_keys, REFRESH, NOW)

    @pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
    def test_non_finite_exp_cannot_be_json(
        self, keys: Keys, access_keys: KeyLookup, value: str
    ) -> None:
        payload = json.dumps(access_claims(exp=0), separators=(",", ":")).replace(
            '"exp":0', f'"exp":{value}'
        )
        assert value in payload
        token = forge(header_of(keys.rs256), payload.encode(), signer=LocalSigner(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("value", ["1e400", "-1e400"])
    def test_overflowing_exp_is_refused(
        self, keys: Keys, access_keys: KeyLookup, value: str
    ) -> None:
        """1e400 is JSON but parses to an infinite float: the codec refuses it outright."""
        payload = json.dumps(access_claims(exp=0), separators=(",", ":")).replace(
            '"exp":0', f'"exp":{value}'
        )
        token = forge(header_of(keys.rs256), payload.encode(), signer=LocalSigner(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)

    def test_exp_with_too_many_digits(self, keys: Keys, access_keys: KeyLookup) -> None:
        payload = json.dumps(access_claims(exp=0), separators=(",", ":")).replace(
            '"exp":0', '"exp":' + "9" * 5000
        )
        token = forge(header_of(keys.rs256), payload.encode(), signer=LocalSigner(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)


# --- token kind confusion ------------------------------------------------------------------


class TestTokenKindConfusion:
    def test_refresh_token_presented_as_access(
        self, keys: Keys, access_keys: KeyLookup, all_keys: KeyLookup
    ) -> None:
        token = refresh_token(keys.refresh)
        verify_refresh_token(token, all_keys, REFRESH, NOW)
        for lookup in (access_keys, all_keys):
            with pytest.raises(AlgorithmNotAllowed):
                verify_access_token(token, lookup, ACCESS, NOW)
        assert access_keys.calls == []

    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_access_token_presented_as_refresh(
        self, keys: Keys, refresh_keys: KeyLookup, all_keys: KeyLookup, alg: str
    ) -> None:
        token = access_token(getattr(keys, alg))
        verify_access_token(token, all_keys, ACCESS, NOW)
        for lookup in (refresh_keys, all_keys):
            with pytest.raises(AlgorithmNotAllowed):
                verify_refresh_token(token, lookup, REFRESH, NOW)

    def test_access_claims_resigned_with_the_refresh_key(
        self, keys: Keys, refresh_keys: KeyLookup, all_keys: KeyLookup
    ) -> None:
        token = forge(header_of(keys.refresh), access_claims(), signer=LocalSigner(keys.refresh))
        with pytest.raises(AlgorithmNotAllowed):
            verify_access_token(token, all_keys, ACCESS, NOW)
        # Presented where a refresh token goes, the signature verifies but typ gives it away...
        with pytest.raises(WrongTokenType):
            verify_refresh_token(token, refresh_keys, REFRESH, NOW)
        # ...and with typ swapped too, token_use does.
        typed = forge(
            header_of(keys.refresh, REFRESH_TYP), access_claims(), signer=LocalSigner(keys.refresh)
        )
        with pytest.raises(WrongTokenType):
            verify_refresh_token(typed, refresh_keys, REFRESH, NOW)

    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_refresh_claims_resigned_with_an_access_key(
        self, keys: Keys, access_keys: KeyLookup, all_keys: KeyLookup, alg: str
    ) -> None:
        entry: PrivateKeyEntry = getattr(keys, alg)
        token = forge(header_of(entry, REFRESH_TYP), refresh_claims(), signer=LocalSigner(entry))
        with pytest.raises(AlgorithmNotAllowed):
            verify_refresh_token(token, all_keys, REFRESH, NOW)
        with pytest.raises(WrongTokenType):
            verify_access_token(token, access_keys, ACCESS, NOW)
        # typ fixed up to look like an access token: token_use still gives it away.
        typed = forge(header_of(entry), refresh_claims(aud=AUDIENCE), signer=LocalSigner(entry))
        with pytest.raises(WrongTokenType):
            verify_access_token(typed, access_keys, ACCESS, NOW)

    def test_typ_swapped(self, keys: Keys, access_keys: KeyLookup, refresh_keys: KeyLookup) -> None:
        access = forge(
            header_of(keys.rs256, REFRESH_TYP), access_claims(), signer=LocalSigner(keys.rs256)
        )
        with pytest.raises(WrongTokenType):
            verify_access_token(access, access_keys, ACCESS, NOW)
        refresh = forge(
            header_of(keys.refresh, ACCESS_TYP), refresh_claims(), signer=LocalSigner(keys.refresh)
        )
        with pytest.raises(WrongTokenType):
            verify_refresh_token(refresh, refresh_keys, REFRESH, NOW)

    def test_token_use_swapped(
        self, keys: Keys, access_keys: KeyLookup, refresh_keys: KeyLookup
    ) -> None:
        with pytest.raises(WrongTokenType):
            verify_access_token(
                access_token(keys.rs256, token_use="refresh"), access_keys, ACCESS, NOW
            )
        with pytest.raises(WrongTokenType):
            verify_refresh_token(
                refresh_token(keys.refresh, token_use="access"), refresh_keys, REFRESH, NOW
            )

    @pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "at+JWT+x", "application/jwt",
                                     "rt+jwt", "", None, 1, ["at+jwt"], DROP])  # fmt: skip
    def test_wrong_or_missing_access_typ(
        self, keys: Keys, access_keys: KeyLookup, typ: object
    ) -> None:
        token = forge(header_of(keys.rs256, typ), access_claims(), signer=LocalSigner(keys.rs256))
        with pytest.raises(WrongTokenType):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize(
        "typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"]
    )
    def test_access_typ_spellings_allowed_by_rfc_7515(
        self, keys: Keys, access_keys: KeyLookup, typ: str
    ) -> None:
        token = forge(header_of(keys.rs256, typ), access_claims(), signer=LocalSigner(keys.rs256))
        verify_access_token(token, access_keys, ACCESS, NOW)


# --- encoding, size and JSON ---------------------------------------------------------------


def _padded_token(keys: Keys, length: int) -> str:
    """A correctly signed RS256 access token whose length is as close to ``length`` as base64url
    allows (never longer)."""
    best = ""
    for pad in range(length // 2, length):
        token = access_token(keys.rs256, pad="p" * pad)
        if len(token) > length:
            break
        best = token
    return best


class TestEncoding:
    def test_oversize_token(self, keys: Keys, access_keys: KeyLookup) -> None:
        assert MAX_TOKEN_LENGTH == 8192
        with pytest.raises(TokenTooLarge):
            verify_access_token("a" * 8193, access_keys, ACCESS, NOW)
        largest = _padded_token(keys, MAX_TOKEN_LENGTH)
        assert MAX_TOKEN_LENGTH - 1 <= len(largest) <= MAX_TOKEN_LENGTH
        verify_access_token(largest, access_keys, ACCESS, NOW)
        oversize = access_token(keys.rs256, pad="p" * 6000)
        assert len(oversize) > MAX_TOKEN_LENGTH
        with pytest.raises(TokenTooLarge):
            verify_access_token(oversize, access_keys, ACCESS, NOW)
        assert access_keys.calls == [keys.rs256.kid]  # only the in-size token reached a key

    @pytest.mark.parametrize("index", [0, 1, 2])
    @pytest.mark.parametrize("padding", ["=", "==", "%3D"])
    def test_padding_appended_to_a_segment(
        self, keys: Keys, access_keys: KeyLookup, index: int, padding: str
    ) -> None:
        segments = parts(access_token(keys.rs256))
        segments[index] += padding
        with pytest.raises(MalformedToken):
            verify_access_token(".".join(segments), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("index", [0, 1, 2])
    @pytest.mark.parametrize("char", ["+", "/", " ", "\t", "\n", "?", "*", "é", "\u0000", "٣"])
    def test_characters_outside_base64url(
        self, keys: Keys, access_keys: KeyLookup, index: int, char: str
    ) -> None:
        segments = parts(access_token(keys.rs256))
        segments[index] = segments[index][:5] + char + segments[index][6:]
        with pytest.raises(MalformedToken):
            verify_access_token(".".join(segments), access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    def test_standard_base64_alphabet(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = access_token(keys.rs256)
        header, payload, signature = parts(token)
        standard = base64.b64encode(b64url_decode(signature)).decode()
        assert any(char in standard for char in "+/=")  # 256 bytes: padded at least
        with pytest.raises(MalformedToken):
            verify_access_token(f"{header}.{payload}.{standard}", access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("wrapper", ["Bearer {}", " {}", "{} ", "{}\n", '"{}"', "{}."])
    def test_surrounding_text(self, keys: Keys, access_keys: KeyLookup, wrapper: str) -> None:
        with pytest.raises(MalformedToken):
            verify_access_token(wrapper.format(access_token(keys.rs256)), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("alg", ACCESS_ALGS)
    def test_non_canonical_trailing_bits_in_the_signature(
        self, keys: Keys, access_keys: KeyLookup, alg: str
    ) -> None:
        token = access_token(getattr(keys, alg))
        header, payload, signature = parts(token)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        unused_bits = {2: 4, 3: 2}[len(signature) % 4]  # RSA-2048 and ES256/EdDSA: 4 bits
        last = alphabet.index(signature[-1])
        assert last % (1 << unused_bits) == 0
        twin = signature[:-1] + alphabet[last | 1]
        assert b64url_decode(signature) == base64.urlsafe_b64decode(twin + "=" * (-len(twin) % 4))
        with pytest.raises(MalformedToken):
            verify_access_token(f"{header}.{payload}.{twin}", access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("token", [None, b"a.b.c", 1, 1.5, ["a", "b", "c"], {"t": 1}, object()])
    def test_not_a_string(self, access_keys: KeyLookup, token: object) -> None:
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)

    def test_bytes_of_a_valid_token(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = access_token(keys.rs256)
        with pytest.raises(MalformedToken):
            verify_access_token(token.encode(), access_keys, ACCESS, NOW)


class TestJsonStructure:
    def test_duplicate_alg_in_header(self, keys: Keys, access_keys: KeyLookup) -> None:
        signer = LocalSigner(keys.rs256)
        for raw in (
            f'{{"alg":"RS256","alg":"none","kid":"{keys.rs256.kid}","typ":"at+jwt"}}',
            f'{{"alg":"none","alg":"RS256","kid":"{keys.rs256.kid}","typ":"at+jwt"}}',
            f'{{"alg":"RS256","alg":"RS256","kid":"{keys.rs256.kid}","typ":"at+jwt"}}',
            f'{{"alg":"RS256","kid":"{keys.rs256.kid}","kid":"x","typ":"at+jwt"}}',
            f'{{"alg":"RS256","kid":"{keys.rs256.kid}","typ":"rt+jwt","typ":"at+jwt"}}',
        ):
            token = forge(raw.encode(), access_claims(), signer=signer)
            with pytest.raises(MalformedToken):
                verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    @pytest.mark.parametrize(
        "duplicate",
        [f'"exp":{NOW + 10**6}', f'"exp":{NOW - 10**6}', '"sub":"admin"', '"token_use":"refresh"',
         '"aud":"other"', '"roles":["admin"]'],
    )  # fmt: skip
    def test_duplicate_claims_in_payload(
        self, keys: Keys, access_keys: KeyLookup, duplicate: str
    ) -> None:
        compact = json.dumps(access_claims(), separators=(",", ":"))
        # Signed with our key: only the duplicate check stands between it and acceptance.
        for raw in (compact[:-1] + "," + duplicate + "}", "{" + duplicate + "," + compact[1:]):
            token = forge(header_of(keys.rs256), raw.encode(), signer=LocalSigner(keys.rs256))
            with pytest.raises(MalformedToken):
                verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize(
        "payload",
        [b"not json", b"", b"[]", b'["sub","user-1"]', b"null", b'"claims"', b"42", b"true",
         b"\xff\xfe{}", b'{"sub":"user-1"', b"{} {}", b"\xef\xbb\xbf{}"],
    )  # fmt: skip
    def test_payload_not_a_json_object(
        self, keys: Keys, access_keys: KeyLookup, payload: bytes
    ) -> None:
        if payload == b"":
            # An empty payload segment is refused before decoding (the segment must be non-empty).
            header = segment(header_of(keys.rs256))
            token = (
                f"{header}..{b64url_encode(LocalSigner(keys.rs256).sign(f'{header}.'.encode()))}"
            )
        else:
            token = forge(header_of(keys.rs256), payload, signer=LocalSigner(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("header", [b"not json", b"[]", b'["RS256"]', b"null", b"\xff"])
    def test_header_not_a_json_object(
        self, keys: Keys, access_keys: KeyLookup, header: bytes
    ) -> None:
        token = forge(header, access_claims(), signer=LocalSigner(keys.rs256))
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == []

    def test_deeply_nested_payload(self, keys: Keys, access_keys: KeyLookup) -> None:
        compact = json.dumps(access_claims(), separators=(",", ":"))
        raw = compact[:-1] + ',"x":' + "[" * 1500 + "]" * 1500 + "}"
        token = forge(header_of(keys.rs256), raw.encode(), signer=LocalSigner(keys.rs256))
        assert len(token) <= MAX_TOKEN_LENGTH
        with pytest.raises(MalformedToken):
            verify_access_token(token, access_keys, ACCESS, NOW)


# --- signature forgeries -------------------------------------------------------------------


class TestSignatureForgery:
    @pytest.mark.parametrize(
        ("r", "s"),
        [(0, 0), (P256_N, P256_N), (0, 1), (1, 0), (P256_N, 1), (1, P256_N), (P256_N - 1, P256_N)],
        ids=["r=s=0", "r=s=n", "r=0,s=1", "r=1,s=0", "r=n,s=1", "r=1,s=n", "r=n-1,s=n"],
    )
    def test_psychic_ecdsa_signatures(
        self, keys: Keys, access_keys: KeyLookup, r: int, s: int
    ) -> None:
        """CVE-2022-21449: r = s = 0 (and values reduced to 0 mod n) must never verify."""
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        token = forge(header_of(keys.es256), access_claims(), signature=signature)
        with pytest.raises(InvalidSignature):
            verify_access_token(token, access_keys, ACCESS, NOW)
        with pytest.raises(InvalidSignature):
            verify_signature(keys.es256.verification_key(), b"", signature)

    @pytest.mark.parametrize("length", [1, 63, 65, 66, 72, 128])
    def test_ecdsa_signature_of_the_wrong_length(
        self, keys: Keys, access_keys: KeyLookup, length: int
    ) -> None:
        token = forge(header_of(keys.es256), access_claims(), signature=b"\x01" * length)
        with pytest.raises(InvalidSignature):
            verify_access_token(token, access_keys, ACCESS, NOW)

    def test_ecdsa_der_signature_is_not_jws(self, keys: Keys, access_keys: KeyLookup) -> None:
        token = access_token(keys.es256)
        raw = b64url_decode(parts(token)[2])
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        with pytest.raises(InvalidSignature):
            verify_access_token(with_signature(token, der), access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("value", ["zero", "one", "modulus", "all-ones"])
    def test_degenerate_rsa_signatures(
        self, keys: Keys, access_keys: KeyLookup, value: str
    ) -> None:
        public = keys.rs256.verification_key().key
        assert not isinstance(public, bytes)
        n = public.public_numbers().n  # type: ignore[union-attr]
        number = {"zero": 0, "one": 1, "modulus": n, "all-ones": 2**2048 - 1}[value]
        token = forge(header_of(keys.rs256), access_claims(), signature=number.to_bytes(256, "big"))
        with pytest.raises(InvalidSignature):
            verify_access_token(token, access_keys, ACCESS, NOW)

    @pytest.mark.parametrize("signature", [bytes(64), b"\xff" * 64], ids=["zeros", "ones"])
    def test_degenerate_eddsa_signatures(
        self, keys: Keys, access_keys: KeyLookup, signature: bytes
    ) -> None:
        token = forge(header_of(keys.eddsa), access_claims(), signature=signature)
        with pytest.raises(InvalidSignature):
            verify_access_token(token, access_keys, ACCESS, NOW)

    def test_hs256_with_the_empty_secret(self, keys: Keys, refresh_keys: KeyLookup) -> None:
        token = forge(header_of(keys.refresh, REFRESH_TYP), refresh_claims(), secret=b"")
        with pytest.raises(InvalidSignature):
            verify_refresh_token(token, refresh_keys, REFRESH, NOW)
        # A key set holding an empty (or short) secret refuses to verify with it at all.
        for weak in (b"", b"\x00" * 31):
            weak_keys = KeyLookup(VerificationKey(kid=keys.refresh.kid, alg="HS256", key=weak))
            forged = forge(header_of(keys.refresh, REFRESH_TYP), refresh_claims(), secret=weak)
            with pytest.raises(AlgorithmNotAllowed):
                verify_refresh_token(forged, weak_keys, REFRESH, NOW)

    @pytest.mark.parametrize(
        ("ours", "theirs"), [("rs256", "attacker_rs256"), ("es256", "attacker_es256")]
    )
    def test_signed_by_a_key_not_in_the_set_with_a_known_kid(
        self, keys: Keys, access_keys: KeyLookup, ours: str, theirs: str
    ) -> None:
        our_entry: PrivateKeyEntry = getattr(keys, ours)
        attacker: PrivateKeyEntry = getattr(keys, theirs)
        token = forge(
            header_of(our_entry), access_claims(roles=["admin"]), signer=LocalSigner(attacker)
        )
        with pytest.raises(InvalidSignature):
            verify_access_token(token, access_keys, ACCESS, NOW)
        assert access_keys.calls == [our_entry.kid]

    def test_signed_by_a_key_not_in_the_set_with_its_own_kid(
        self, keys: Keys, access_keys: KeyLookup
    ) -> None:
        token = access_token(keys.attacker_rs256)
        with pytest.raises(UnknownKey):
            verify_access_token(token, access_keys, ACCESS, NOW)

    def test_es256_high_s_twin_verifies_and_keeps_the_jti(
        self, keys: Keys, access_keys: KeyLookup
    ) -> None:
        """Not a rejection: a documented residual property. ECDSA signatures are malleable,
        (r, s) and (r, n - s) both verify, so an ES256 token has a second valid spelling. It
        carries the same claims (same jti), so anything that tracks or revokes tokens must key
        on jti/sid, never on the token string or its hash."""
        token = access_token(keys.es256)
        raw = b64url_decode(parts(token)[2])
        r, s = raw[:32], int.from_bytes(raw[32:], "big")
        twin = with_signature(token, r + (P256_N - s).to_bytes(32, "big"))
        assert twin != token
        original = verify_access_token(token, access_keys, ACCESS, NOW)
        assert verify_access_token(twin, access_keys, ACCESS, NOW) == original


# --- properties: nothing escapes, nothing mutated verifies ----------------------------------


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ANY_CHARACTER = st.characters() | st.characters(categories=["Cs"])
_MALFORMED_CAUSES = (ValueError, RecursionError)  # codec: binascii.Error, JSON, UTF-8, recursion


def _only_rejections(call: Callable[[], object]) -> TokenRejected | None:
    """Run ``call``; return its rejection (None if it verified). Anything that is not a
    ``TokenRejected`` propagates and fails the test, and a ``MalformedToken`` caused by an
    unexpected exception type (verify_jws's catch-all for internal errors) fails it too."""
    rejection: TokenCoreError | None = None
    try:
        call()
    except TokenCoreError as exc:
        rejection = exc
    if rejection is None:
        return None
    assert isinstance(rejection, TokenRejected), f"not a rejection: {rejection!r}"
    cause = rejection.__cause__
    if type(rejection) is MalformedToken and cause is not None:
        assert isinstance(cause, _MALFORMED_CAUSES), f"internal error swallowed: {cause!r}"
    return rejection


_token_like = st.one_of(
    st.lists(_ANY_CHARACTER, max_size=400).map("".join),
    st.binary(max_size=400).map(lambda data: data.decode("latin-1")),
    st.lists(
        st.text(alphabet=_B64URL_ALPHABET + "=+/. ", max_size=120), min_size=1, max_size=5
    ).map(".".join),
    st.lists(
        st.one_of(
            st.binary(max_size=80).map(b64url_encode),
            st.dictionaries(
                st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8), max_size=4
            ).map(lambda d: segment(d)),
            st.sampled_from(
                [
                    segment({"alg": "none"}),
                    segment({"alg": "HS256", "kid": "k"}),
                    segment({"alg": "RS256", "kid": "k", "typ": "at+jwt"}),
                ]
            ),
        ),
        min_size=3,
        max_size=3,
    ).map(".".join),
)


class TestProperties:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(token=_token_like)
    def test_arbitrary_input_is_only_ever_rejected(self, keys: Keys, token: str) -> None:
        access = KeyLookup(*(entry.verification_key() for entry in keys.access_entries))
        refresh = KeyLookup(keys.refresh.verification_key())
        assert _only_rejections(lambda: verify_access_token(token, access, ACCESS, NOW)) is not None
        assert (
            _only_rejections(lambda: verify_refresh_token(token, refresh, REFRESH, NOW)) is not None
        )
        assert _only_rejections(lambda: verify_jws(token, access)) is not None

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_mutated_valid_tokens_never_verify(self, keys: Keys, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["rs256", "es256", "eddsa", "refresh"]))
        entry: PrivateKeyEntry = getattr(keys, kind)
        lookup = KeyLookup(entry.verification_key())
        original = refresh_token(entry) if kind == "refresh" else access_token(entry)

        def verify(candidate: str) -> object:
            if kind == "refresh":
                return verify_refresh_token(candidate, lookup, REFRESH, NOW)
            return verify_access_token(candidate, lookup, ACCESS, NOW)

        token = original
        for _ in range(data.draw(st.integers(1, 4))):
            operation = data.draw(
                st.sampled_from(["replace", "insert", "delete", "swap", "truncate"])
            )
            position = data.draw(st.integers(0, max(len(token) - 1, 0)))
            char = data.draw(st.sampled_from(_B64URL_ALPHABET + ".=+/ \x00é") | _ANY_CHARACTER)
            if operation == "replace" and token:
                token = token[:position] + char + token[position + 1 :]
            elif operation == "insert":
                token = token[:position] + char + token[position:]
            elif operation == "delete" and token:
                token = token[:position] + token[position + 1 :]
            elif operation == "swap":
                segments = token.split(".")
                data.draw(st.randoms()).shuffle(segments)
                token = ".".join(segments)
            elif operation == "truncate":
                token = token[:position]
        rejection = _only_rejections(lambda: verify(token))
        if token == original:
            assert rejection is None, f"the unchanged token was rejected: {rejection!r}"
        else:
            assert rejection is not None, "a mutated token verified"
