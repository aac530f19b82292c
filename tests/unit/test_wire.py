"""The one wire parser (``tokencore.wire``): its rules, and the authorizer, the HTTP edge and the
stores agreeing on every input, so no header, cookie or id reads one way at the authorizer and
another way behind it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.authorizer.app import EventKind, parse_event
from tests.clock import ManualClock
from tokencore import wire
from tokencore.config import Settings
from tokencore.errors import InvalidRequest, MalformedToken
from tokencore.http import Request
from tokencore.http.errors import BadRequest
from tokencore.sessions import InMemorySessionStore
from tokencore.tokens import MAX_TOKEN_LENGTH

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
FGP = wire.FINGERPRINT_COOKIE
RT = wire.REFRESH_COOKIE


def http_event(
    headers: dict[str, Any] | None = None, cookies: list[Any] | None = None
) -> dict[str, Any]:
    """One HTTP API (payload 2.0) request, as both the authorizer and a route receive it."""
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeKey": "GET /me",
        "rawPath": "/me",
        "headers": headers or {},
        "requestContext": {"http": {"method": "GET", "path": "/me"}, "stage": "$default"},
    }
    if cookies is not None:
        event["cookies"] = cookies
    return event


def authorizer_view(event: dict[str, Any]) -> Any:
    return parse_event(EventKind.HTTP, event).request


# --- the bearer token ------------------------------------------------------------------------

BEARER_HEADERS: list[tuple[object, str | None]] = [
    (f"Bearer {TOKEN}", TOKEN),
    (f"bearer {TOKEN}", TOKEN),
    (f"BEARER {TOKEN}", TOKEN),
    ("Bearer abc==", "abc=="),
    (f"Bearer  {TOKEN}", None),  # two spaces
    (f" Bearer {TOKEN}", None),
    (f"Bearer {TOKEN} ", None),
    (f"Bearer\t{TOKEN}", None),
    ("Bearer a=b", None),  # padding only at the end (RFC 6750 b64token)
    ("Bearer", None),
    ("Bearer ", None),
    ("Basic YWRtaW46YWRtaW4=", None),
    (f"Bearer {TOKEN} {TOKEN}", None),
    ("Bearer " + "a" * MAX_TOKEN_LENGTH, "a" * MAX_TOKEN_LENGTH),
    ("Bearer " + "a" * (MAX_TOKEN_LENGTH + 1), None),
    ("", None),
    (None, None),
    (7, None),
    ([f"Bearer {TOKEN}", f"Bearer {TOKEN}"], None),
]


@pytest.mark.parametrize(("header", "expected"), BEARER_HEADERS)
def test_the_bearer_rule(header: object, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(MalformedToken):
            wire.bearer_token(header)
    else:
        assert wire.bearer_token(header) == expected
    assert wire.bearer_token_or_none(header) == expected


@pytest.mark.parametrize(("header", "expected"), BEARER_HEADERS)
def test_the_authorizer_and_the_edge_read_one_bearer_token(
    header: object, expected: str | None
) -> None:
    event = http_event({"Authorization": header})
    seen_by_authorizer = wire.bearer_token_or_none(authorizer_view(event).authorization)
    assert seen_by_authorizer == expected
    assert Request(event).bearer_token() == expected


def test_two_spellings_of_authorization_are_no_token_anywhere() -> None:
    event = http_event({"Authorization": f"Bearer {TOKEN}", "authorization": f"Bearer {TOKEN}"})
    assert wire.bearer_token_or_none(authorizer_view(event).authorization) is None
    assert Request(event).bearer_token() is None


def test_the_wire_states_the_verifiers_token_bound() -> None:
    assert wire.MAX_TOKEN_CHARS == MAX_TOKEN_LENGTH


# --- cookies ----------------------------------------------------------------------------------

COOKIE_CASES: list[tuple[list[str], dict[str, str | None]]] = [
    ([f"{FGP}=f1", f"{RT}=r1"], {FGP: "f1", RT: "r1"}),
    # A __Host- cookie twice cannot come from an honest browser: ambiguous, so absent.
    ([f"{FGP}=f1", f"{FGP}=f1"], {FGP: None}),
    ([f"{FGP}=f1", f"{FGP}=f2"], {FGP: None}),
    ([f"{FGP}=f1; {FGP}=f2"], {FGP: None}),  # hidden inside one entry
    ([f"{FGP}=", f"{FGP}=f2"], {FGP: None}),
    (["__HOST-x=1", "__HOST-x=2"], {"__HOST-x": None}),  # the prefix in any case
    # Any other name: the first (browsers send the longest path first).
    ([f"{RT}=planted", f"{RT}=r1"], {RT: "planted"}),
    (["theme=dark", "theme=light"], {"theme": "dark"}),
    ([f"theme=dark; {FGP}=f1"], {FGP: "f1", "theme": "dark"}),  # entries may hold pairs
    ([f'{FGP}="f1"'], {FGP: '"f1"'}),  # a quoted value is taken as sent
    ([f" {FGP} = f1"], {FGP: None}),  # no space inside a name
    ([f"{FGP}= f1 "], {FGP: "f1"}),
    ([f"{FGP}="], {FGP: None}),  # empty is absent
    ([FGP], {FGP: None}),
    (["=f1"], {"": None}),
]


@pytest.mark.parametrize(("cookies", "expected"), COOKIE_CASES)
def test_the_cookie_rule(cookies: list[str], expected: dict[str, str | None]) -> None:
    pairs = wire.cookie_pairs(cookies)
    jar = wire.cookie_jar(pairs)
    for name, value in expected.items():
        assert wire.cookie_value(pairs, name) == value, name
        assert jar.get(name) == value, name


@pytest.mark.parametrize(("cookies", "expected"), COOKIE_CASES)
def test_the_authorizer_and_the_edge_read_one_fingerprint(
    cookies: list[str], expected: dict[str, str | None]
) -> None:
    for event in (
        http_event(cookies=cookies),
        # No cookies list: both read the Cookie header instead.
        http_event({"Cookie": "; ".join(cookies)}),
    ):
        assert authorizer_view(event).fingerprint == Request(event).cookie(FGP)
        if FGP in expected:
            assert Request(event).cookie(FGP) == expected[FGP]


def test_cookie_bounds() -> None:
    many = [f"c{n}=v{n}" for n in range(wire.MAX_COOKIES)]
    assert wire.cookie_value(wire.cookie_pairs([*many, f"{FGP}=late"]), FGP) is None
    assert wire.cookie_value(wire.cookie_pairs([f"{FGP}=early", *many]), FGP) == "early"
    joined = "; ".join(many) + f"; {FGP}=late"
    assert wire.cookie_value(wire.cookie_pairs(joined), FGP) is None
    # A token-sized value is read (the verifier judges it); beyond the pair bound it is not.
    token_sized = "t" * MAX_TOKEN_LENGTH
    assert wire.cookie_value(wire.cookie_pairs([f"{RT}={token_sized}"]), RT) == token_sized
    huge = "t" * wire.MAX_COOKIE_CHARS
    assert wire.cookie_value(wire.cookie_pairs([f"{RT}={huge}"]), RT) is None
    # A whole header beyond its bound is not read at all.
    header = f"{FGP}=f1; pad=" + "p" * wire.MAX_COOKIE_HEADER_CHARS
    assert wire.cookie_pairs(header) == []
    assert wire.cookie_pairs(None) == []
    assert wire.cookie_pairs([None, 7, {}, "x"]) == []


def test_a_cookie_header_in_pieces_is_read_as_one() -> None:
    pieces = ["theme=dark", f"{FGP}=f1"]
    assert wire.cookie_value(wire.cookie_pairs(pieces), FGP) == "f1"
    assert wire.cookie_value(wire.cookie_pairs([*pieces, f"{FGP}=f1"]), FGP) is None


PAIR = st.tuples(st.sampled_from([FGP, RT, "__host-x", "theme", "a"]), st.text(max_size=4))


@given(st.lists(PAIR, max_size=12))
def test_the_jar_and_the_single_reader_agree(pairs: list[tuple[str, str]]) -> None:
    jar = wire.cookie_jar(pairs)
    for name in {name for name, _ in pairs}:
        assert jar.get(name) == wire.cookie_value(pairs, name)


# --- ids --------------------------------------------------------------------------------------

DEVICE_IDS: list[tuple[object, bool]] = [
    ("laptop-7f3a", True),
    ("a", True),
    ("my phone", True),
    ("d" * 128, True),
    ("d" * 129, False),
    (" laptop", False),
    ("laptop ", False),
    ("lap\ttop", False),
    ("laptöp", False),  # printable, not ASCII
    ("lap\x7ftop", False),
    ("", False),
    (7, False),
    (["a", "a"], False),
]


@pytest.mark.parametrize(("device_id", "valid"), DEVICE_IDS)
def test_the_authorizer_the_edge_and_the_store_agree_on_device_ids(
    device_id: object, valid: bool
) -> None:
    assert wire.is_valid_device_id(device_id) is valid
    event = http_event({"X-Device-Id": device_id})
    # The authorizer: an invalid id is no id (a device-bound session then denies).
    assert authorizer_view(event).device_id == (device_id if valid else None)
    # The edge: absent or empty is None, anything else invalid is a 400, never truncated.
    if valid:
        assert Request(event).device_id() == device_id
    elif device_id == "":
        assert Request(event).device_id() is None
    else:
        with pytest.raises(BadRequest):
            Request(event).device_id()
    # The session store: only what the edge would have let through.
    store = InMemorySessionStore(Settings(), ManualClock())
    if valid:
        assert store.new_session("user-1", device_id=device_id).device_id == device_id  # type: ignore[arg-type]
    elif isinstance(device_id, str) and device_id:
        with pytest.raises(InvalidRequest):
            store.new_session("user-1", device_id=device_id)


@pytest.mark.parametrize(
    ("value", "session", "user"),
    [
        ("Xq3-_v9aZ0PqL8mN2bC4dE", True, True),
        ("8f14e45f-ceea-467f-a0e6-4b1e5c2f5d3a", True, True),
        ("a.b:c", True, True),
        ("user@example", True, False),
        ("a+b=", True, False),
        ("a" * 128, True, True),
        ("a" * 129, False, False),
        ("a b", False, False),
        ("../../etc", False, False),
        ("", False, False),
        (42, False, False),
    ],
)
def test_one_rule_per_kind_of_id(value: object, session: bool, user: bool) -> None:
    assert wire.is_valid_session_id(value) is session
    assert wire.is_valid_user_id(value) is user


def test_the_session_store_takes_user_ids_by_the_user_stores_rule() -> None:
    store = InMemorySessionStore(replace(Settings(), max_sessions_per_user=5), ManualClock())
    with pytest.raises(ValueError, match="user_id"):
        store.new_session("user@example")
    with pytest.raises(ValueError, match="user_id"):
        store.list_sessions("a+b")


# --- weight -------------------------------------------------------------------------------------


def test_the_wire_parser_imports_nothing_heavy() -> None:
    """The authorizer's fast path imports it: no AWS SDK, no Powertools, no Argon2, no crypto."""
    code = (
        "import sys\n"
        "import tokencore.wire, tokencore.authcontext\n"
        "heavy = ('boto3', 'botocore', 'aws_lambda_powertools', 'argon2', 'cryptography', "
        "'tokencore.http', 'tokencore.sessions', 'tokencore.users', 'tokencore.tokens')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
