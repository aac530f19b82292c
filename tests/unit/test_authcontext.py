"""The authorizer's context, written by the authorizer and read back by the routes: one type
(``tokencore.authcontext.AuthorizerContext``) for both ends."""

from __future__ import annotations

from typing import Any

import pytest

from tokencore.authcontext import AuthorizerContext, Unauthenticated
from tokencore.authz import Grant
from tokencore.policy import SessionCheckReason
from tokencore.tokens import AccessClaims

NOW = 1_800_000_000.0
USER_ID = "8f14e45f-ceea-467f-a0e6-4b1e5c2f5d3a"
SESSION_ID = "Xq3-_v9aZ0PqL8mN2bC4dE"


def claims(**changes: Any) -> AccessClaims:
    values: dict[str, Any] = {
        "subject": USER_ID,
        "session_id": SESSION_ID,
        "token_id": "jti-1",
        "issuer": "https://auth.example.com",
        "audience": "tokencore-api",
        "issued_at": int(NOW),
        "expires_at": int(NOW) + 900,
        "roles": ("user", "admin"),
        "email": "alice@example.com",
    }
    values.update(changes)
    return AccessClaims(**values)


def test_the_authorizer_writes_the_documented_flat_context() -> None:
    grant = Grant(claims(), SessionCheckReason.SENSITIVE_ROUTE)
    assert grant.context().to_context() == {
        "user_id": USER_ID,
        "email": "alice@example.com",
        "roles": "user,admin",
        "session_id": SESSION_ID,
        "token_id": "jti-1",
        "expires_at": int(NOW) + 900,
        "session_checked": True,
    }
    without_email = Grant(claims(email=None), None).context().to_context()
    assert without_email["email"] == ""
    assert without_email["session_checked"] is False


def test_what_the_authorizer_writes_a_route_reads_back() -> None:
    written = Grant(claims(), None).context()
    read = AuthorizerContext.from_context(written.to_context(), now=NOW)
    assert read == AuthorizerContext(
        user_id=USER_ID,
        session_id=SESSION_ID,
        email="alice@example.com",
        roles=("admin", "user"),  # sorted, as /me answers them
        token_id="jti-1",
        expires_at=int(NOW) + 900,
        session_checked=False,
    )
    assert read.has_role("admin")
    assert not read.has_role("root")


def test_strings_are_read_as_api_gateway_may_send_them() -> None:
    context = {
        "user_id": USER_ID,
        "session_id": SESSION_ID,
        "roles": "user, admin,,user",
        "email": "",
        "expires_at": str(int(NOW) + 60),
    }
    read = AuthorizerContext.from_context(context, now=NOW)
    assert read.roles == ("admin", "user")
    assert read.email is None
    assert read.expires_at == int(NOW) + 60
    assert read.token_id is None


@pytest.mark.parametrize(
    "context",
    [
        None,
        "user_id=x",
        {},
        {"user_id": USER_ID},
        {"session_id": SESSION_ID},
        {"user_id": 42, "session_id": SESSION_ID},
        {"user_id": "../../etc", "session_id": SESSION_ID},
        {"user_id": "user@example", "session_id": SESSION_ID},
        {"user_id": USER_ID, "session_id": "a b"},
        {"user_id": USER_ID, "session_id": SESSION_ID, "expires_at": "tomorrow"},
        {"user_id": USER_ID, "session_id": SESSION_ID, "expires_at": True},
        {"user_id": USER_ID, "session_id": SESSION_ID, "expires_at": "nan"},
        {"user_id": USER_ID, "session_id": SESSION_ID, "expires_at": int(NOW) - 30},
    ],
)
def test_a_missing_or_malformed_identity_is_unauthenticated(context: object) -> None:
    with pytest.raises(Unauthenticated):
        AuthorizerContext.from_context(context, now=NOW, leeway_seconds=30)


def test_expiry_is_enforced_with_the_authorizers_leeway() -> None:
    context = {"user_id": USER_ID, "session_id": SESSION_ID, "expires_at": int(NOW)}
    assert AuthorizerContext.from_context(context, now=NOW, leeway_seconds=30).user_id == USER_ID
    with pytest.raises(Unauthenticated):
        AuthorizerContext.from_context(context, now=NOW + 30, leeway_seconds=30)
    with pytest.raises(Unauthenticated):
        AuthorizerContext.from_context(context, now=NOW)
