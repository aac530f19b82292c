"""Property-based fuzzing (hypothesis) of the authorizer and of the login and refresh bodies.

The functional tier already throws arbitrary events and Authorization headers at the
authorizer (``tests/functional/test_authorizer_robustness.py``). This module adds what only a
key holder could build, and the grant routes:

* the authorizer with *validly signed* tokens whose claims and header carry one to three
  mutations that each make the token unacceptable, wrapped in HTTP API, REST REQUEST and REST
  TOKEN events: never an allow, never an exception (REST's ``Exception("Unauthorized")`` aside);
* the authorizer with a *valid* token inside an event that is malformed in a way that matters
  (route, method, cookies, event kind): never an allow;
* ``POST /auth/login`` with arbitrary bodies, content types and base64 flags: a 4xx with the
  JSON error shape, never a 2xx, never a 5xx, never an exception;
* ``POST /auth/refresh`` with arbitrary tokens in the cookie and the body (mutations of a real
  refresh token included): never a 2xx, never a 5xx, and the real session stays active.

Keys are the functional stack's (generated per run, in moto).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from functions.authorizer import app as authorizer_app
from tests.functional.conftest import (
    ISSUER,
    Stack,
    load_event,
)
from tests.functional.test_authorizer import is_allowed
from tests.functional.test_http_edge import invoke
from tests.security.http_kit import forge
from tests.security.tally import record
from tokencore.service import TokenGrant
from tokencore.tokens import fingerprint_hash

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOW = 1_800_000_000  # ManualClock's start
LEEWAY = 30


@dataclass(frozen=True)
class Context:
    function_name: str = "tokencore-authorizer"
    aws_request_id: str = "5e0f8c1a-0000-4000-8000-000000000003"


@pytest.fixture
def alice(authz: Stack) -> TokenGrant:
    return authz.login()


def decide(event: object) -> str:
    """ "allow", "deny" or "unauthorized" (REST's 401); anything else fails the property."""
    try:
        response = authorizer_app.lambda_handler(event, Context())
    except Exception as exc:
        if type(exc) is not Exception or exc.args != ("Unauthorized",):
            raise AssertionError(f"the authorizer raised {exc!r}") from exc
        return "unauthorized"
    if "isAuthorized" in response:
        assert set(response) <= {"isAuthorized", "context"}
        return "allow" if response["isAuthorized"] is True else "deny"
    # REST: IAM evaluation of the policy for the method ARN that was asked for.
    method_arn = str(event["methodArn"]) if isinstance(event, dict) else ""
    stage, method, path = _split_arn(method_arn)
    return "allow" if is_allowed(response, method, path, stage) else "deny"


def _split_arn(method_arn: str) -> tuple[str, str, str]:
    """``arn:...:api/stage/METHOD/path`` as (``arn:...:api/stage``, METHOD, /path)."""
    head, _, rest = method_arn.partition("/")
    stage, _, rest = rest.partition("/")
    method, _, path = rest.partition("/")
    return f"{head}/{stage}", method, "/" + path


# --- signed tokens with arbitrary bad claims ------------------------------------------------------

# Each mutation alone makes an access token unacceptable.
MUTATIONS: dict[str, Any] = {
    "iss": st.text(max_size=30).filter(lambda v: v != ISSUER) | st.integers() | st.none(),
    "aud": st.text(max_size=20).filter(lambda v: v != "tokencore-api")
    | st.lists(st.text(max_size=10).filter(lambda v: v != "tokencore-api"), max_size=3)
    | st.integers(),
    "exp": st.integers(max_value=NOW - LEEWAY) | st.text(max_size=12) | st.booleans(),
    "iat": st.integers(min_value=NOW + LEEWAY + 1) | st.text(max_size=12) | st.none(),
    "nbf": st.integers(min_value=NOW + LEEWAY + 1, max_value=2**53) | st.text(max_size=12),
    "sub": st.just("") | st.integers() | st.none() | st.text(min_size=257, max_size=300),
    "sid": st.just("") | st.integers() | st.lists(st.text(max_size=3), max_size=2),
    "jti": st.just("") | st.integers() | st.none(),
    "token_use": st.text(max_size=10).filter(lambda v: v != "access") | st.integers(),
    "roles": st.text(max_size=10) | st.lists(st.integers(), min_size=1, max_size=3),
    "fgp": st.text(max_size=50) | st.integers(),
}
REQUIRED = ("iss", "aud", "sub", "jti", "sid", "iat", "exp", "token_use")
HEADER_MUTATIONS: dict[str, Any] = {
    "typ": st.text(max_size=12).filter(
        lambda v: v.lower().removeprefix("application/") != "at+jwt"
    ),
    "jku": st.text(max_size=20),
    "jwk": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    "crit": st.lists(st.text(max_size=5), max_size=2),
    "b64": st.booleans(),
    "x5u": st.text(max_size=20),
    "kid": st.text(max_size=20),
}


@st.composite
def bad_tokens(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A header and claims with 1 to 3 mutations, and the names of what was mutated."""
    names = draw(
        st.lists(
            st.sampled_from([*sorted(MUTATIONS), "drop", "header"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    header: dict[str, Any] = {}
    claims: dict[str, Any] = {}
    for name in names:
        if name == "drop":
            claims[draw(st.sampled_from(REQUIRED))] = None  # marked for removal below
            claims["__drop__"] = True
        elif name == "header":
            member = draw(st.sampled_from(sorted(HEADER_MUTATIONS)))
            header[member] = draw(HEADER_MUTATIONS[member])
        else:
            claims[name] = draw(MUTATIONS[name])
    return header, claims, names


def signed_access(
    stack: Stack, grant: TokenGrant, header: dict[str, Any], changes: dict[str, Any]
) -> str:
    entry = stack.access_keys.active
    claims = {
        "iss": ISSUER,
        "aud": "tokencore-api",
        "sub": stack.user.user_id,
        "sid": grant.session_id,
        "jti": "fuzzed-token",
        "iat": NOW,
        "exp": NOW + 900,
        "token_use": "access",
        "roles": ["user"],
        "email": "alice@example.com",
        "fgp": fingerprint_hash(grant.fingerprint or ""),
    }
    drop = changes.pop("__drop__", False)
    for name, value in changes.items():
        if drop and value is None and name in REQUIRED:
            claims.pop(name, None)
        else:
            claims[name] = value
    full_header = {"alg": entry.alg, "kid": entry.kid, "typ": "at+jwt", **header}
    return forge(full_header, claims, key=entry)


def events_for(token: str, grant: TokenGrant) -> list[dict[str, Any]]:
    fingerprint = grant.fingerprint or ""
    http = load_event(
        "authorizer/http-sensitive-route.json",
        access_token=token,
        fingerprint=fingerprint,
        device_id="",
    )
    rest = load_event(
        "authorizer/rest-request-valid.json",
        access_token=token,
        fingerprint=fingerprint,
        device_id="",
    )
    return [http, rest]


@FUZZ
@given(mutation=bad_tokens())
def test_signed_tokens_with_bad_claims_are_never_allowed(
    authz: Stack, alice: TokenGrant, mutation: tuple[dict[str, Any], dict[str, Any], list[str]]
) -> None:
    header, changes, names = mutation
    token = signed_access(authz, alice, header, dict(changes))
    for evt in events_for(token, alice):
        verdict = decide(evt)
        record("fuzz", f"authorizer: signed token mutated in {names}", verdict != "allow")
        assert verdict != "allow", (names, header, changes)


def test_the_unmutated_signed_token_is_allowed(authz: Stack, alice: TokenGrant) -> None:
    """The control: the fuzzer's forging path, with nothing wrong, is allowed."""
    token = signed_access(authz, alice, {}, {})
    assert [decide(evt) for evt in events_for(token, alice)] == ["allow", "allow"]


# --- a valid token inside a malformed event -------------------------------------------------------

EVENT_DAMAGE = st.sampled_from(
    [
        ("drop", ("cookies",)),
        ("drop", ("rawPath",)),
        ("drop", ("requestContext", "http", "method")),
        ("drop", ("version",)),
        ("drop", ("headers", "authorization")),
        ("set", ("rawPath",)),
        ("set", ("requestContext", "http", "method")),
        ("set", ("cookies",)),
        ("set", ("headers",)),
        ("set", ("version",)),
        ("set", ("routeKey",)),
        ("set", ("headers", "authorization")),
    ]
)
# Values that are wrong where they are put (each damage site refuses every one of them).
DAMAGE_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["", "me", "get", "1.0", "GET", "/admin/users/x/revoke", "POST /admin/{x}"]),
)


@FUZZ
@given(damages=st.lists(st.tuples(EVENT_DAMAGE, DAMAGE_VALUES), min_size=1, max_size=3))
def test_a_valid_token_in_a_malformed_event_is_never_allowed(
    authz: Stack, alice: TokenGrant, damages: list[tuple[tuple[str, tuple[str, ...]], Any]]
) -> None:
    evt = events_for(alice.access_token, alice)[0]
    relevant = False
    for (action, path), value in damages:
        parent: Any = evt
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if action == "drop":
            parent.pop(path[-1], None)
            relevant = True
        else:
            # Values that still make sense at the site are skipped: a rawPath of "/me" is a
            # different request, not a malformed one; a routeKey only ever tightens.
            if path == ("routeKey",) and not (isinstance(value, str) and " " in value):
                continue  # no template ($default): nothing to tighten
            if path[-1] == "method" and value in ("GET", "POST"):
                continue
            parent[path[-1]] = value
            relevant = True
    assume(relevant)
    verdict = decide(evt)
    record("fuzz", f"authorizer: malformed event {damages}", verdict != "allow")
    assert verdict != "allow", damages


# --- login and refresh bodies ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "username": JSON_VALUES | st.sampled_from(["alice", "ALICE", " alice", "root"]),
            "password": JSON_VALUES,
        },
        optional={"refresh_token": JSON_VALUES, "extra": JSON_VALUES},
    ).map(lambda v: json.dumps(v).encode()),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "application/json; charset=latin-1",
        "multipart/form-data",
    ]
)


def _with_body(
    relative: str, body: bytes, content_type: str, encoded: bool, **placeholders: str
) -> dict[str, Any]:
    evt = load_event(relative, **placeholders)
    headers = evt.setdefault("headers", {})
    headers.pop("content-type", None)
    if content_type:
        headers["content-type"] = content_type
    if encoded:
        evt["body"], evt["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        evt["body"], evt["isBase64Encoded"] = body.decode("utf-8", "replace"), False
    return evt


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES, encoded=st.booleans())
def test_arbitrary_login_bodies_are_refused_cleanly(
    stack: Stack, body: bytes, content_type: str, encoded: bool
) -> None:
    result = invoke(
        "issuer", _with_body("issuer/login-valid.json", body, content_type, encoded, password="x")
    )
    ok = 400 <= result.status < 500 and set(result.json()) == {"error", "error_description"}
    record("fuzz", "login body", ok)
    assert 400 <= result.status < 500, (result.status, body)
    assert set(result.json()) == {"error", "error_description"}
    assert result.cookies == {}


REFRESH_TOKENS = st.one_of(
    st.text(max_size=100),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=300
    ),
    st.builds(
        lambda a, b, c: f"eyJ{a}.{b}.{c}",
        st.text(alphabet="abcXYZ0123-_", max_size=40),
        st.text(alphabet="abcXYZ0123-_", max_size=60),
        st.text(alphabet="abcXYZ0123-_", max_size=60),
    ),
)


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    """A real token with characters changed, cut or inserted (never the token itself)."""
    chars = list(token)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(chars) - 1))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        symbol = draw(st.sampled_from("AZaz09-_.=+/ "))
        if action == "replace":
            chars[position] = symbol
        elif action == "delete" and len(chars) > 1:
            del chars[position]
        else:
            chars.insert(position, symbol)
    return "".join(chars)


@FUZZ
@given(data=st.data(), where=st.sampled_from(["cookie", "body"]))
def test_arbitrary_refresh_tokens_are_refused_and_revoke_nothing(
    stack: Stack, data: st.DataObject, where: str
) -> None:
    import dataclasses

    grant = getattr(stack, "_fuzz_grant", None)
    if grant is None:  # one session per test function, shared by its examples
        stack.runtime.settings = dataclasses.replace(stack.settings, refresh_token_transport="both")
        grant = stack.login()
        stack._fuzz_grant = grant  # type: ignore[attr-defined]
    token = data.draw(REFRESH_TOKENS | mutated(grant.refresh_token))
    assume(token != grant.refresh_token)
    if where == "cookie":
        evt = load_event(
            "refresher/refresh-cookie.json", refresh_token="PLACEHOLDER", fingerprint=""
        )
        evt["cookies"] = [c.replace("PLACEHOLDER", token) for c in evt["cookies"]]
    else:
        body = json.dumps({"refresh_token": token}).encode()
        evt = _with_body(
            "refresher/refresh-body.json",
            body,
            "application/json",
            False,
            refresh_token="x",
            fingerprint="",
        )
    result = invoke("refresher", evt)
    ok = 400 <= result.status < 500
    record("fuzz", f"refresh token in the {where}", ok)
    assert 400 <= result.status < 500, (result.status, token)
    assert stack.runtime.sessions.get_session(grant.session_id).status == "active"
