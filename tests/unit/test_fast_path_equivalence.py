"""The authorizer's fast-path shortcuts against the plain definitions they replace.

Each shortcut (``make bench`` budget 1) must decide exactly as its specification: the bearer
header against RFC 6750's grammar as a regular expression, the token's shape against the
compact-JWS expression, the header map's shortcut against the general loop, the strict JSON
scanner against the decoder it skips, and the route-decision cache against a policy that has
never seen the route. Hypothesis supplies the inputs, biased towards the characters that
matter (case, padding, dots, spaces, non-ASCII).
"""

from __future__ import annotations

import base64
import json
import re
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_policy import _claims
from tokencore import wire
from tokencore.config import Settings
from tokencore.errors import MalformedToken, TokenCoreError
from tokencore.jose import codec
from tokencore.policy import Policy
from tokencore.tokens import verify_jws
from tokencore.tokens.claims import AccessClaims

# The specifications, as they were written before the shortcuts.
BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)")
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

_INTERESTING = "Bb EeAaRr=.-_~+/AZaz09\t\u212a\u0130é\x00;"
headers_text = st.one_of(
    st.text(alphabet=_INTERESTING, max_size=24),
    st.builds(
        lambda scheme, token: scheme + token,
        st.sampled_from(["Bearer ", "bearer ", "BEARER ", "bEaReR ", "Bearer  ", "Bearer\t"]),
        st.text(alphabet=_INTERESTING, max_size=24),
    ),
)


@settings(max_examples=600, deadline=None)
@given(headers_text)
def test_bearer_token_accepts_exactly_rfc_6750(header: str) -> None:
    expected = BEARER.fullmatch(header)
    if expected is None:
        with pytest.raises(MalformedToken):
            wire.bearer_token(header)
    else:
        assert wire.bearer_token(header) == expected.group(1)


class _NoKeys:
    def get(self, kid: str) -> object:
        raise AssertionError("the shape check runs before any key lookup")


_SHAPE = "token is not a compact JWS"
tokens_text = st.text(alphabet="eyJ0.-_+/= a\u00e9\u212a\x00", max_size=20)


@settings(max_examples=600, deadline=None)
@given(tokens_text)
def test_the_token_shape_check_is_the_compact_jws_expression(token: str) -> None:
    try:
        verify_jws(token, _NoKeys())  # type: ignore[arg-type]
    except AssertionError:
        refused_for_shape = False  # got past the shape check (to the key lookup)
    except TokenCoreError as exc:
        refused_for_shape = str(exc) == _SHAPE
    else:  # pragma: no cover - nothing verifies without keys
        pytest.fail("a token verified without keys")
    assert refused_for_shape == (COMPACT_JWS.fullmatch(token) is None)


header_names = st.text(alphabet="aAbB-_xX1é\u212a", min_size=0, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(header_names, st.text(max_size=4), max_size=6))
def test_the_header_map_shortcut_equals_the_general_loop(headers: dict[object, object]) -> None:
    # A mapping that is not a dict always takes the general loop: the reference.
    reference = wire.header_map(types.MappingProxyType(headers))
    assert wire.header_map(headers) == reference


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(json_documents, st.sampled_from(["", " ", "\n", "x", "}", ",1"]), st.booleans())
def test_the_strict_scanner_shortcut_equals_the_decoder(
    value: object, suffix: str, leading_space: bool
) -> None:
    text = (" " if leading_space else "") + json.dumps(value, separators=(",", ":")) + suffix

    def outcome(parse: object) -> object:
        try:
            return ("ok", parse(text))  # type: ignore[operator]
        except ValueError as exc:
            return ("error", type(exc))

    assert outcome(codec._parse_strict) == outcome(codec._STRICT_DECODER.decode)


def test_duplicate_members_are_refused_on_both_paths() -> None:
    for text in ('{"a":1,"a":2}', ' {"a":1,"a":2}', '{"a":{"b":1,"b":1}}'):
        with pytest.raises(MalformedToken, match="duplicate"):
            codec.json_object(text)


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet="ABCabc09-_", max_size=12))
def test_segment_decoding_is_the_same_for_text_and_bytes(segment: str) -> None:
    def outcome(value: str | bytes) -> object:
        try:
            return codec.decode_segment(value)
        except MalformedToken as exc:
            return str(exc)

    assert outcome(segment) == outcome(segment.encode("ascii"))


_ROLES = st.sampled_from([(), ("user",), ("admin",), ("user", "admin"), ("auditor",)])
_PATHS = st.sampled_from(
    [
        "/me",
        "/admin",
        "/admin/",
        "/admin/users/u1/revoke",
        "//admin/users",
        "/%61dmin/users",
        "/ADMIN/users",
        "/reports/q1",
        "/auth/sessions/revoke-all",
        "/a/../admin/x",
        "/x%2F..%2Fadmin",
        "/" + "a" * 300,
        "admin",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["GET", "POST", "get", "DELETE"]), _PATHS, _ROLES),
        min_size=1,
        max_size=6,
    )
)
def test_remembered_route_decisions_equal_fresh_ones(
    requests: list[tuple[str, str, tuple[str, ...]]],
) -> None:
    env = {
        "SESSION_CHECK_SAMPLE_RATE": "0",
        "ROUTE_ROLES": "* /admin/*=admin,GET /reports/*=auditor|admin",
    }
    warm = Policy(Settings.from_env(env))
    for method, path, roles in requests * 2:  # every route seen again: served from memory
        fresh = Policy(Settings.from_env(env))
        claims = _claims(roles)
        assert warm.decide(claims, method, path) == fresh.decide(claims, method, path)
        assert warm.decide(claims, method, path, path) == fresh.decide(claims, method, path, path)


optional_text = st.none() | st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    roles=st.none() | st.lists(st.text(min_size=1, max_size=5), max_size=3),
    email=optional_text,
    fgp=optional_text,
    acr=optional_text,
)
def test_claims_built_from_a_payload_equal_the_dataclass_constructor(
    roles: list[str] | None, email: str | None, fgp: str | None, acr: str | None
) -> None:
    payload: dict[str, object] = {
        "iss": "https://issuer.example",
        "aud": "api",
        "sub": "usr_1",
        "sid": "sid_1",
        "jti": "jti_1",
        "iat": 10,
        "exp": 910,
        "token_use": "access",
    }
    for name, value in (("roles", roles), ("email", email), ("fgp", fgp), ("acr", acr)):
        if value is not None:
            payload[name] = value
    built = AccessClaims.from_payload(payload)
    constructed = AccessClaims(
        issuer="https://issuer.example",
        audience="api",
        subject="usr_1",
        session_id="sid_1",
        token_id="jti_1",
        issued_at=10,
        expires_at=910,
        roles=tuple(roles or ()),
        email=email,
        fingerprint_hash=fgp,
        security_level=acr,
    )
    assert built == constructed
    assert hash(built) == hash(constructed)
    with pytest.raises(AttributeError):
        built.subject = "other"  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_base64url_encoding_is_the_standard_librarys(data: bytes) -> None:
    expected = base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert codec.b64url_encode(data) == expected
    if data:
        assert codec.b64url_decode(expected) == data
