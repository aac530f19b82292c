"""Attacks on token verification through the payload: tampering, time claims, issuer and
audience, required and mistyped claims, token kind confusion. How the tokens are built and
what each case asserts: token_kit.py."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import KeyLookup, Keys
from tests.security.token_kit import (
    ACCESS,
    ACCESS_ALGS,
    AUDIENCE,
    DROP,
    ISSUER,
    LEEWAY,
    NOW,
    REFRESH,
    access_claims,
    access_token,
    forge,
    header_of,
    parts,
    refresh_claims,
    refresh_token,
    segment,
    with_signature,
)
from tokencore.errors import (
    AlgorithmNotAllowed,
    ExpiredToken,
    InvalidClaim,
    InvalidSignature,
    MalformedToken,
    MissingClaim,
    TokenNotYetValid,
    WrongTokenType,
)
from tokencore.jose.algorithms import verify_signature
from tokencore.jose.codec import b64url_decode
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner
from tokencore.tokens import (
    ACCESS_TYP,
    REFRESH_TYP,
    verify_access_token,
    verify_refresh_token,
)

# --- tampering -----------------------------------------------------------------------------


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
