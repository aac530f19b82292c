"""Claims as data (tokencore.tokens.claims): each token type is one value with a rule table,
written by ``to_payload`` and read back by ``from_payload``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import pytest

from tokencore.errors import InvalidClaim, MissingClaim, UnknownKey, WrongTokenType
from tokencore.keys import VerificationKey, generate_key
from tokencore.keys.local import LocalSigner
from tokencore.tokens import (
    AccessClaims,
    RefreshClaims,
    VerifyOptions,
    mint_access_token,
    verify_access_token,
)
from tokencore.tokens.claims import STANDARD_CLAIMS, Claim, optional_text

ACCESS = AccessClaims(
    issuer="https://auth.example.com",
    audience="tokencore-api",
    subject="user-1",
    session_id="sess-1",
    token_id="jti-1",
    issued_at=1_800_000_000,
    expires_at=1_800_000_900,
    roles=("user", "admin"),
    email="ada@example.com",
    fingerprint_hash="fgp-hash",
    security_level="2",
)
REFRESH = RefreshClaims(
    issuer="https://auth.example.com",
    audience="https://auth.example.com",
    subject="user-1",
    session_id="sess-1",
    token_id="rt-1",
    generation=4,
    issued_at=1_800_000_000,
    expires_at=1_800_604_800,
)


@dataclass(frozen=True)
class _OneKey:
    """A KeyLookup holding one key."""

    key: VerificationKey

    def get(self, kid: str) -> VerificationKey:
        if kid != self.key.kid:
            raise UnknownKey("unknown kid")
        return self.key


def test_payloads_in_table_order_with_the_type_claim_after_the_standard_ones() -> None:
    assert list(ACCESS.to_payload()) == [
        "iss", "aud", "sub", "sid", "jti", "iat", "exp", "token_use",
        "roles", "email", "fgp", "acr",
    ]  # fmt: skip
    assert ACCESS.to_payload()["roles"] == ["user", "admin"]
    assert REFRESH.to_payload() == {
        "iss": "https://auth.example.com",
        "aud": "https://auth.example.com",
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "rt-1",
        "iat": 1_800_000_000,
        "exp": 1_800_604_800,
        "token_use": "refresh",
        "gen": 4,
    }


@pytest.mark.parametrize("claims", [ACCESS, REFRESH])
def test_round_trip(claims: AccessClaims | RefreshClaims) -> None:
    assert type(claims).from_payload(claims.to_payload()) == claims
    # verify's path (standard claims already checked) reads the same value.
    assert type(claims).from_payload(claims.to_payload(), standard_checked=True) == claims


def test_every_attribute_has_exactly_one_rule() -> None:
    for kind in (AccessClaims, RefreshClaims):
        attributes = sorted(field.name for field in fields(kind))
        assert sorted(claim.attr for claim in kind.RULES) == attributes
        assert kind.RULES[: len(STANDARD_CLAIMS)] == STANDARD_CLAIMS


def test_optional_claims_are_left_out_when_empty_and_read_back_as_defaults() -> None:
    bare = AccessClaims(
        issuer="i", audience="a", subject="s", session_id="x", token_id="t",
        issued_at=1, expires_at=2, email="",
    )  # fmt: skip
    payload = bare.to_payload()
    assert payload["roles"] == []  # roles are always written
    assert not {"email", "fgp", "acr"} & payload.keys()
    read = AccessClaims.from_payload({**payload, "email": None})
    assert (read.roles, read.email, read.fingerprint_hash, read.security_level) == (
        (),
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"token_use": "refresh"}, WrongTokenType),
        ({"token_use": None}, WrongTokenType),
        ({"sub": None}, MissingClaim),  # null is missing (verify refuses it earlier)
        ({"sub": 7}, InvalidClaim),
        ({"sid": ""}, InvalidClaim),
        ({"jti": "x" * 257}, InvalidClaim),
        ({"iat": "1800000000"}, InvalidClaim),
        ({"exp": True}, InvalidClaim),
        ({"roles": "admin"}, InvalidClaim),
        ({"roles": None}, InvalidClaim),
        ({"roles": ["x"] * 65}, InvalidClaim),
        ({"roles": [""]}, InvalidClaim),
        ({"email": 7}, InvalidClaim),
        ({"fgp": ["a"]}, InvalidClaim),
    ],
)
def test_access_rules_refuse(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        AccessClaims.from_payload({**ACCESS.to_payload(), **change})


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "sid", "jti", "iat", "exp"])
def test_a_missing_standard_claim_is_refused(name: str) -> None:
    payload = ACCESS.to_payload()
    del payload[name]
    with pytest.raises(MissingClaim, match=name):
        AccessClaims.from_payload(payload)


@pytest.mark.parametrize(
    ("gen", "error"), [(None, MissingClaim), (-1, InvalidClaim), (True, InvalidClaim)]
)
def test_refresh_generation_rule(gen: object, error: type[Exception]) -> None:
    payload = REFRESH.to_payload()
    if gen is None:
        del payload["gen"]
    else:
        payload["gen"] = gen
    with pytest.raises(error):
        RefreshClaims.from_payload(payload)


def test_numeric_dates_are_whole_seconds() -> None:
    values = {f.name: getattr(REFRESH, f.name) for f in fields(RefreshClaims)}
    claims = RefreshClaims(**{**values, "issued_at": 5.9})
    assert claims.to_payload()["iat"] == 5
    assert type(claims.to_payload()["iat"]) is int
    assert AccessClaims.from_payload({**ACCESS.to_payload(), "exp": 1_800_000_900.7}) == ACCESS


@dataclass(frozen=True, slots=True, kw_only=True)
class _TenantAccessClaims(AccessClaims):
    """What a new claim takes: an attribute and a rule (here on a subclass, to leave the real
    type alone; in the code it is the same two lines in AccessClaims)."""

    tenant: str | None = None

    RULES: ClassVar[tuple[Claim, ...]] = (
        *AccessClaims.RULES,
        Claim("tid", "tenant", optional_text, required=False),
    )


def test_a_new_claim_is_one_attribute_and_one_rule() -> None:
    base = {f.name: getattr(ACCESS, f.name) for f in fields(AccessClaims)}
    claims = _TenantAccessClaims(**base, tenant="acme")
    payload = claims.to_payload()
    assert payload["tid"] == "acme"
    assert _TenantAccessClaims.from_payload(payload) == claims
    with pytest.raises(InvalidClaim, match="tid"):
        _TenantAccessClaims.from_payload({**payload, "tid": 1})
    # Minted like any access token; the verifier's own type ignores the member it does not know.
    entry = generate_key("EdDSA")
    token = mint_access_token(LocalSigner(entry), claims).token
    options = VerifyOptions(issuer=ACCESS.issuer, audience=ACCESS.audience, leeway_seconds=0)
    keys = _OneKey(entry.verification_key())
    assert verify_access_token(token, keys, options, ACCESS.issued_at) == ACCESS
