"""Minting and verifying tokens (tokencore.tokens), the strict codec, and the fingerprint helpers.

Keys are generated at test time with keys.local; time is always an injected ``now``.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokencore.config import Settings
from tokencore.errors import MalformedToken, TokenRejected, UnknownKey
from tokencore.jose.codec import b64url_decode, b64url_encode, json_compact, json_object
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner, generate_key
from tokencore.keys.model import VerificationKey
from tokencore.tokens import (
    ACCESS_TYP,
    MAX_TOKEN_LENGTH,
    REFRESH_TYP,
    AccessClaims,
    RefreshClaims,
    VerifyOptions,
    fingerprint_hash,
    fingerprint_matches,
    mint_access_token,
    mint_refresh_token,
    new_fingerprint,
    new_token_id,
    verify_access_token,
    verify_jws,
    verify_refresh_token,
)

NOW = 1_800_000_000.0
SETTINGS = Settings(token_issuer="https://auth.example.com", token_audience="tokencore-api")
ACCESS = VerifyOptions.for_access(SETTINGS)
REFRESH = VerifyOptions.for_refresh(SETTINGS)


class Keys:
    """A fixed key set: get(kid) or UnknownKey, like a KeyRing."""

    def __init__(self, *keys: VerificationKey) -> None:
        self._keys = {key.kid: key for key in keys}

    def get(self, kid: str) -> VerificationKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKey("unknown kid") from None


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@cache
def _entry(alg: str) -> PrivateKeyEntry:
    return generate_key(alg)


def _signer_and_keys(alg: str) -> tuple[LocalSigner, Keys]:
    entry = _entry(alg)
    return LocalSigner(entry), Keys(entry.verification_key())


def _segments(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, _ = token.split(".")
    return json_object(b64url_decode(header)), json_object(b64url_decode(payload))


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_access_token_round_trip(alg: str) -> None:
    signer, keys = _signer_and_keys(alg)
    _, fgp = new_fingerprint()
    minted = mint_access_token(
        signer,
        AccessClaims(
            issuer=ACCESS.issuer,
            audience=ACCESS.audience,
            subject="user-1",
            session_id="sess-1",
            token_id=new_token_id(),
            roles=("reader", "writer"),
            issued_at=NOW + 0.7,  # type: ignore[arg-type]  # a fractional clock reading
            expires_at=NOW + 0.7 + 900,  # type: ignore[arg-type]
            email="ada@example.com",
            fingerprint_hash=fgp,
            security_level="pwd",
        ),
    )
    assert minted.issued_at == int(NOW)
    assert minted.expires_at == int(NOW) + 900
    claims = verify_access_token(minted.token, keys, ACCESS, NOW)
    assert claims == AccessClaims(
        subject="user-1",
        session_id="sess-1",
        token_id=minted.token_id,
        issuer=ACCESS.issuer,
        audience=ACCESS.audience,
        issued_at=int(NOW),
        expires_at=int(NOW) + 900,
        roles=("reader", "writer"),
        email="ada@example.com",
        fingerprint_hash=fgp,
        security_level="pwd",
    )
    assert claims.has_role("writer")
    assert not claims.has_role("admin")
    header, payload = _segments(minted.token)
    assert header == {"alg": alg, "kid": signer.kid, "typ": ACCESS_TYP}
    assert payload["token_use"] == "access"
    assert payload["jti"] == minted.token_id


def test_access_token_optional_claims_are_omitted_when_absent() -> None:
    signer, keys = _signer_and_keys("RS256")
    minted = mint_access_token(
        signer,
        AccessClaims(
            issuer=ACCESS.issuer,
            audience=ACCESS.audience,
            subject="user-1",
            session_id="sess-1",
            token_id=new_token_id(),
            issued_at=int(NOW),
            expires_at=int(NOW) + 60,
        ),
    )
    _, payload = _segments(minted.token)
    assert not {"email", "fgp", "acr"} & payload.keys()
    claims = verify_access_token(minted.token, keys, ACCESS, NOW)
    assert (claims.roles, claims.email, claims.fingerprint_hash, claims.security_level) == (
        (),
        None,
        None,
        None,
    )


def test_refresh_token_round_trip() -> None:
    signer, keys = _signer_and_keys("HS256")
    minted = mint_refresh_token(
        signer,
        RefreshClaims(
            issuer=REFRESH.issuer,
            audience=REFRESH.issuer,
            subject="user-1",
            session_id="sess-1",
            token_id="rt-1",
            generation=3,
            issued_at=int(NOW),
            expires_at=int(NOW) + 604_800,
        ),
    )
    claims = verify_refresh_token(minted.token, keys, REFRESH, NOW)
    assert claims == RefreshClaims(
        subject="user-1",
        session_id="sess-1",
        token_id="rt-1",
        generation=3,
        issuer=REFRESH.issuer,
        audience=REFRESH.issuer,
        issued_at=int(NOW),
        expires_at=int(NOW) + 604_800,
    )
    header, payload = _segments(minted.token)
    assert header == {"alg": "HS256", "kid": signer.kid, "typ": REFRESH_TYP}
    # Nothing about the user beyond the subject: roles and email are re-read at refresh.
    assert set(payload) == {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "token_use", "gen"}


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_access_and_refresh_signers_refuse_the_other_kind(alg: str) -> None:
    access_signer, _ = _signer_and_keys(alg)
    refresh_signer, _ = _signer_and_keys("HS256")
    refresh = RefreshClaims(
        issuer="i",
        audience="i",
        subject="s",
        session_id="x",
        token_id="t",
        generation=0,
        issued_at=int(NOW),
        expires_at=int(NOW) + 1,
    )
    access = AccessClaims(
        issuer="i",
        audience="a",
        subject="s",
        session_id="x",
        token_id="t",
        issued_at=int(NOW),
        expires_at=int(NOW) + 1,
    )
    with pytest.raises(ValueError, match="refresh"):
        mint_refresh_token(access_signer, refresh)
    with pytest.raises(ValueError, match="asymmetric"):
        mint_access_token(refresh_signer, access)


@pytest.mark.parametrize("prefix", ["-", "_"])
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "HS256"])
def test_kids_starting_with_dash_or_underscore_verify(alg: str, prefix: str) -> None:
    """Our kids are RFC 7638 thumbprints (base64url): one key in 32 gets a kid that starts
    with "-" or "_", and its tokens must verify like any other (regression: they were refused
    as a malformed kid, an outage for that key)."""
    generated = _entry(alg)
    entry = PrivateKeyEntry(kid=prefix + generated.kid[1:], alg=alg, key=generated.key)
    assert entry.kid.startswith(prefix)
    keys = Keys(entry.verification_key())
    if alg == "HS256":
        minted = mint_refresh_token(
            LocalSigner(entry),
            RefreshClaims(
                issuer=REFRESH.issuer,
                audience=REFRESH.issuer,
                subject="s",
                session_id="x",
                token_id="t",
                generation=0,
                issued_at=int(NOW),
                expires_at=int(NOW) + 60,
            ),
        )
        assert verify_refresh_token(minted.token, keys, REFRESH, NOW).token_id == "t"
    else:
        minted = mint_access_token(
            LocalSigner(entry),
            AccessClaims(
                issuer=ACCESS.issuer,
                audience=ACCESS.audience,
                subject="s",
                session_id="x",
                token_id=new_token_id(),
                issued_at=int(NOW),
                expires_at=int(NOW) + 60,
            ),
        )
        assert verify_access_token(minted.token, keys, ACCESS, NOW).subject == "s"


class _SpyKeys:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get(self, kid: str) -> VerificationKey:
        self.calls.append(kid)
        raise UnknownKey("unknown kid")


@given(
    st.one_of(
        st.text(alphabet=_B64URL_ALPHABET, min_size=43, max_size=43),  # RFC 7638 thumbprints
        st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).map("rt-".__add__),
    )
)
def test_every_kid_shape_keys_local_generates_reaches_the_key_lookup(kid: str) -> None:
    header = b64url_encode(json_compact({"alg": "ES256", "kid": kid}))
    spy = _SpyKeys()
    with pytest.raises(UnknownKey):
        verify_jws(f"{header}.e30.AAAA", spy)
    assert spy.calls == [kid]


def test_access_token_with_a_few_roles_and_a_fingerprint_is_under_1_kb() -> None:
    # The default (RS256, 2048 bits) gives the largest signature of the three algorithms.
    _, fgp = new_fingerprint()
    for alg in ("RS256", "ES256", "EdDSA"):
        signer, _ = _signer_and_keys(alg)
        minted = mint_access_token(
            signer,
            AccessClaims(
                issuer="https://auth.tokencore.example.com",
                audience="tokencore-api",
                subject="3f1c9a52-8e41-4d7b-9c2a-6b0e5f7d1a23",
                session_id=new_token_id(),
                token_id=new_token_id(),
                roles=("user", "editor", "billing-admin", "support"),
                issued_at=int(NOW),
                expires_at=int(NOW) + 900,
                email="ada.lovelace@analytical-engines.example.com",
                fingerprint_hash=fgp,
                security_level="mfa",
            ),
        )
        assert len(minted.token) < 1024, (alg, len(minted.token))
        assert len(minted.token.encode("ascii")) == len(minted.token)


def test_refresh_minting_is_deterministic() -> None:
    signer, _ = _signer_and_keys("HS256")
    inputs = {
        "issuer": REFRESH.issuer,
        "audience": REFRESH.issuer,
        "subject": "user-1",
        "session_id": "sess-1",
        "token_id": "rt-2",
        "generation": 2,
        "issued_at": NOW,
        "expires_at": NOW + 3600,
    }
    first = mint_refresh_token(signer, RefreshClaims(**inputs))  # type: ignore[arg-type]
    second = mint_refresh_token(signer, RefreshClaims(**inputs))  # type: ignore[arg-type]
    assert first.token == second.token
    assert first == second
    # Any input that differs gives a different token (the grace replay relies on exactness).
    other = mint_refresh_token(signer, RefreshClaims(**{**inputs, "generation": 3}))  # type: ignore[arg-type]
    assert other.token != first.token
    # A fractional clock does not leak into the token: issued_at is whole seconds.
    shifted = mint_refresh_token(signer, RefreshClaims(**{**inputs, "issued_at": NOW + 0.9}))  # type: ignore[arg-type]
    assert shifted.token == first.token


def test_new_token_ids_are_unique_and_url_safe() -> None:
    ids = {new_token_id() for _ in range(200)}
    assert len(ids) == 200
    for token_id in ids:
        assert len(token_id) == 22
        assert b64url_encode(b64url_decode(token_id)) == token_id  # 16 random bytes


def test_minted_token_repr_hides_the_token() -> None:
    signer, _ = _signer_and_keys("HS256")
    minted = mint_refresh_token(
        signer,
        RefreshClaims(
            issuer="i",
            audience="i",
            subject="s",
            session_id="x",
            token_id="secret-id",
            generation=0,
            issued_at=int(NOW),
            expires_at=int(NOW) + 60,
        ),
    )
    text = repr(minted)
    assert minted.token not in text
    assert "secret-id" not in text
    assert minted.token.split(".")[2] not in str(minted)


def test_token_length_limit_is_8_kb() -> None:
    assert MAX_TOKEN_LENGTH == 8192


# --- codec strictness -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "why"),
    [
        ("", "empty"),
        ("QQ==", "padding"),
        ("QQ=", "partial padding"),
        ("QUI=", "padding on a 2-byte group"),
        ("a+b/", "standard alphabet"),
        ("-_+/", "mixed alphabets"),
        ("QQ ", "trailing space"),
        (" QQ", "leading space"),
        ("Q Q", "inner space"),
        ("QQ\n", "newline"),
        ("QUJD\r\n", "CRLF"),
        ("QUJDR", "4n+1 length"),
        ("A", "single character"),
        ("QR", "non-zero trailing bits (canonical is QQ)"),
        ("QUK", "non-zero trailing bits (canonical is QUI)"),
        ("AB", "non-zero trailing bits (canonical is AA)"),
        ("QQ.", "dot"),
        ("QÜ", "non-ASCII letter"),
        ("\uff31", "full-width Q"),
        ("٣٣", "Arabic-Indic digits"),
        ("QQ\x00", "NUL"),
    ],
)
def test_b64url_decode_refuses_non_canonical(segment: str, why: str) -> None:
    with pytest.raises(MalformedToken):
        b64url_decode(segment)


@pytest.mark.parametrize(
    ("segment", "data"),
    [("QQ", b"A"), ("QUI", b"AB"), ("QUJD", b"ABC"), ("-_8", b"\xfb\xff"), ("AA", b"\x00")],
)
def test_b64url_decode_accepts_canonical(segment: str, data: bytes) -> None:
    assert b64url_decode(segment) == data
    assert b64url_encode(data) == segment


@given(st.binary(min_size=1, max_size=200))
def test_b64url_round_trip(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert "=" not in encoded
    assert b64url_decode(encoded) == data


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ ."))
def test_b64url_decode_is_canonical_or_refuses(segment: str) -> None:
    """Two strings never decode to the same bytes: whatever decodes re-encodes to itself."""
    try:
        data = b64url_decode(segment)
    except MalformedToken:
        return
    assert b64url_encode(data) == segment


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff{}", "invalid UTF-8"),
        (b'{"a":"\xc0\xaf"}', "overlong UTF-8"),
        (b'{"a":"\xed\xa0\x80"}', "UTF-8-encoded surrogate"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"exp":NaN}', "NaN"),
        (b'{"exp":Infinity}', "Infinity"),
        (b'{"exp":-Infinity}', "-Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "deep array nesting"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "deep object nesting"),
        (b"[]", "array"),
        (b'"text"', "string"),
        (b"1", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
        (b"", "empty"),
        (b"{", "truncated"),
        (b"{}{}", "two documents"),
        (b"{'a':1}", "single quotes"),
        (b'{"a":1,}', "trailing comma"),
        (b'{"exp":1,"exp":2}', "duplicate member"),
        (b'{"a":{"b":1,"b":1}}', "nested duplicate member"),
        (b'{"exp":' + b"9" * 5000 + b"}", "integer too long to parse"),
        (b"\x00", "NUL"),
    ],
)
def test_json_object_refuses(data: bytes, why: str) -> None:
    with pytest.raises(MalformedToken):
        json_object(data)


def test_json_object_accepts_a_plain_object() -> None:
    data = b' {"a": [1, 2.5, "\\u00e9", null, true], "b": {"c": {}}} '
    assert json_object(data) == {"a": [1, 2.5, "é", None, True], "b": {"c": {}}}


def test_json_object_refuses_numbers_that_overflow_to_infinity() -> None:
    """1e400 is valid JSON syntax but parses to float('inf'): no claim may ever hold it."""
    for text in (b'{"exp":1e400}', b'{"exp":-1e400}', b'{"a":[1e999]}'):
        with pytest.raises(MalformedToken):
            json_object(text)
    assert json_object(b'{"exp":1.5e9}')["exp"] == 1.5e9


def test_json_compact_is_deterministic_and_ascii() -> None:
    value = {"b": 1, "a": "é", "c": [1, 2]}
    assert json_compact(value) == b'{"b":1,"a":"\\u00e9","c":[1,2]}'
    assert json_compact(value) == json_compact(dict(value))
    with pytest.raises(ValueError):
        json_compact({"exp": math.nan})


# --- fingerprint helpers --------------------------------------------------------------------


def test_fingerprint_hash_is_base64url_sha256() -> None:
    # SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2 example).
    assert fingerprint_hash("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    assert b64url_decode(fingerprint_hash("abc")) == hashlib.sha256(b"abc").digest()


def test_new_fingerprint() -> None:
    value, digest = new_fingerprint()
    assert len(value) >= 43  # 32 random bytes
    assert digest == fingerprint_hash(value)
    assert digest != value
    assert fingerprint_matches(digest, value)
    assert new_fingerprint()[0] != value


@pytest.mark.parametrize(
    "presented",
    [None, "", "wrong", "x" * 257, "\udc80", "é", "\x00"],
    ids=["none", "empty", "wrong", "too-long", "lone-surrogate", "non-ascii", "nul"],
)
def test_fingerprint_mismatches_are_false_never_errors(presented: str | None) -> None:
    _, digest = new_fingerprint()
    assert fingerprint_matches(digest, presented) is False


def test_fingerprint_matches_only_the_exact_value() -> None:
    value, digest = new_fingerprint()
    assert fingerprint_matches(digest, value)
    assert not fingerprint_matches(digest, value + " ")
    assert not fingerprint_matches(digest, value[:-1])
    assert not fingerprint_matches(digest, digest)  # the hash itself is not the cookie
    long_value = "y" * 256
    assert fingerprint_matches(fingerprint_hash(long_value), long_value)


# Any code point, lone surrogates included (st.text() leaves them out by default).
_ANY_CHARACTER = st.characters() | st.characters(categories=["Cs"])


@given(st.lists(_ANY_CHARACTER, max_size=300).map("".join))
def test_fingerprint_matches_never_raises(presented: str) -> None:
    _, digest = new_fingerprint()
    assert fingerprint_matches(digest, presented) in (True, False)


# --- verification keys do not leak ----------------------------------------------------------


def test_verification_key_repr_hides_the_secret() -> None:
    secret = b"s3cr3t-" * 6
    key = VerificationKey(kid="r1", alg="HS256", key=secret)
    assert "s3cr3t" not in repr(key)
    assert key.is_symmetric


def test_tokens_are_rejected_not_crashing_on_non_string_input() -> None:
    _, keys = _signer_and_keys("RS256")
    for token in (None, b"a.b.c", 1, ["a", "b", "c"], {"token": "x"}):
        with pytest.raises(MalformedToken):
            verify_access_token(token, keys, ACCESS, NOW)
    with pytest.raises(TokenRejected):
        verify_refresh_token(json.dumps({"a": 1}), keys, REFRESH, NOW)
