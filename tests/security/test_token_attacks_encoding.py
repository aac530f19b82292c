"""Attacks on token verification through the encoding: encoding, size and JSON; signature
forgeries; and the properties (nothing outside tokencore.errors escapes, a mutated token never
verifies). How the tokens are built and what each case asserts: token_kit.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import KeyLookup, Keys
from tests.security.token_kit import (
    ACCESS,
    ACCESS_ALGS,
    NOW,
    P256_N,
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
    InvalidSignature,
    MalformedToken,
    TokenCoreError,
    TokenRejected,
    TokenTooLarge,
    UnknownKey,
)
from tokencore.jose.algorithms import verify_signature
from tokencore.jose.codec import b64url_decode, b64url_encode
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner
from tokencore.keys.model import VerificationKey
from tokencore.tokens import (
    MAX_TOKEN_LENGTH,
    REFRESH_TYP,
    verify_access_token,
    verify_jws,
    verify_refresh_token,
)

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
