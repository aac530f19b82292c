"""Malformed authorizer events: a catalogue of damaged HTTP API, REST REQUEST and REST TOKEN
events, each carrying a *valid* token, handed to the authorizer Lambda handler.

API Gateway builds these events, but part of each one is the client's (the path, the method,
headers, cookies), and the handler must hold even for the parts that are not. Every case must
end in a deny (HTTP ``isAuthorized: false``, a REST policy that does not allow the requested
method ARN) or REST's exact ``Exception("Unauthorized")``; never an allow, never any other
exception. A control per event kind (the undamaged event) is allowed, so each refusal is the
damage's doing. The counts go to the security summary ("malformed authorizer events").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.functional.conftest import Stack, load_event
from tests.functional.test_authorizer import mint
from tests.security.tally import record
from tests.security.test_fuzz import decide
from tokencore.service import TokenGrant

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

Damage = Callable[[dict[str, Any]], None]
ADMIN_PATH = "/admin/users/00000000-0000-4000-8000-000000000000/revoke"


def _drop(*path: str) -> Damage:
    def damage(event: dict[str, Any]) -> None:
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)

    return damage


def _set(value: Any, *path: str) -> Damage:
    def damage(event: dict[str, Any]) -> None:
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(value)

    return damage


def _both(*damages: Damage) -> Damage:
    def damage(event: dict[str, Any]) -> None:
        for one in damages:
            one(event)

    return damage


def _header_twice(event: dict[str, Any]) -> None:
    value = event["headers"]["authorization"]
    event["headers"]["Authorization"] = value


def _fingerprint_twice(event: dict[str, Any]) -> None:
    event["cookies"] = [*event["cookies"], event["cookies"][-1]]


HTTP_DAMAGES: dict[str, Damage] = {
    "version missing": _drop("version"),
    "version 1.0 without a REST shape": _set("1.0", "version"),
    "version a number": _set(2.0, "version"),
    "rawPath missing": _drop("rawPath"),
    "rawPath null": _set(None, "rawPath"),
    "rawPath a number": _set(5, "rawPath"),
    "rawPath empty": _set("", "rawPath"),
    "rawPath without a leading slash": _set("auth/sessions/revoke-all", "rawPath"),
    "rawPath of the admin tree": _set(ADMIN_PATH, "rawPath"),
    "rawPath with dot segments into the admin tree": _set(
        "/auth/../admin/users/x/revoke", "rawPath"
    ),
    "rawPath with an encoded admin segment": _set("/%61dmin/users/x/revoke", "rawPath"),
    "rawPath with a double slash before admin": _set("//admin/users/x/revoke", "rawPath"),
    "rawPath of 9000 characters": _set("/" + "a" * 9000, "rawPath"),
    "routeKey of the admin tree": _set("POST /admin/users/{user_id}/revoke", "routeKey"),
    "routeKey of a greedy admin route": _set("ANY /admin/{proxy+}", "routeKey"),
    "routeKey with a malformed path": _set("POST admin", "routeKey"),
    "requestContext missing": _drop("requestContext"),
    "requestContext a string": _set("context", "requestContext"),
    "requestContext.http missing": _drop("requestContext", "http"),
    "method missing": _drop("requestContext", "http", "method"),
    "method in lower case": _set("post", "requestContext", "http", "method"),
    "method null": _set(None, "requestContext", "http", "method"),
    "method with a space": _set("GET POST", "requestContext", "http", "method"),
    "headers missing": _drop("headers"),
    "headers null": _set(None, "headers"),
    "headers a list": _set(["authorization"], "headers"),
    "Authorization in two spellings": _header_twice,
    "Authorization a number": _set(5, "headers", "authorization"),
    "Authorization a list": _set(["Bearer x"], "headers", "authorization"),
    "Authorization with a trailing space": lambda e: e["headers"].update(
        authorization=e["headers"]["authorization"] + " "
    ),
    "Authorization scheme Basic": lambda e: e["headers"].update(
        authorization="Basic " + e["headers"]["authorization"].split(" ", 1)[1]
    ),
    "cookies missing (the token is bound)": _drop("cookies"),
    "cookies null": _set(None, "cookies"),
    "cookies a string": _set("__Host-fgp=x", "cookies"),
    "cookies of numbers": _set([1, 2], "cookies"),
    "fingerprint cookie twice": _fingerprint_twice,
    "fingerprint cookie of another browser": _set(["__Host-fgp=" + "B" * 43], "cookies"),
    "the event is a list": lambda e: e.clear(),
}


def _rest_request(event: dict[str, Any], **changes: Any) -> None:
    event.update(changes)


REST_REQUEST_DAMAGES: dict[str, Damage] = {
    "methodArn missing": _drop("methodArn"),
    "methodArn a number": _set(5, "methodArn"),
    "methodArn of another service": _set(
        "arn:aws:lambda:us-east-1:123456789012:function:x", "methodArn"
    ),
    "methodArn without a method": _set(
        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod", "methodArn"
    ),
    "methodArn with a wildcard method": _set(
        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/me", "methodArn"
    ),
    "methodArn with a lower-case method": _set(
        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/get/me", "methodArn"
    ),
    "methodArn of the admin tree": _set(
        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST" + ADMIN_PATH,
        "methodArn",
    ),
    "httpMethod disagreeing with the ARN": _set("DELETE", "httpMethod"),
    "path of the admin tree": _set(ADMIN_PATH, "path"),
    "resource of the admin tree": _set("/admin/users/{user_id}/revoke", "resource"),
    "headers missing": _drop("headers"),
    "headers a list": _set([], "headers"),
    "Authorization twice in multiValueHeaders": lambda e: e["multiValueHeaders"].update(
        Authorization=[e["headers"]["Authorization"]] * 2
    ),
    "Authorization in two spellings": lambda e: e["headers"].update(
        authorization=e["headers"]["Authorization"]
    ),
    "Cookie header missing (the token is bound)": _both(
        _drop("headers", "Cookie"), _drop("multiValueHeaders", "Cookie")
    ),
    "fingerprint cookie twice": lambda e: e["headers"].update(
        Cookie=e["headers"]["Cookie"] + "; " + e["headers"]["Cookie"]
    ),
    "type missing (an unknown event)": _drop("type"),
}

REST_TOKEN_DAMAGES: dict[str, Damage] = {
    "authorizationToken missing": _drop("authorizationToken"),
    "authorizationToken empty": _set("", "authorizationToken"),
    "authorizationToken a number": _set(5, "authorizationToken"),
    "authorizationToken without the scheme": lambda e: e.update(
        authorizationToken=e["authorizationToken"].split(" ", 1)[1]
    ),
    "methodArn missing": _drop("methodArn"),
    "methodArn garbage": _set("not-an-arn", "methodArn"),
    "methodArn of the admin tree": _set(
        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST" + ADMIN_PATH,
        "methodArn",
    ),
    "type in lower case": _set("token", "type"),
}


@pytest.fixture
def grant(stack: Stack) -> TokenGrant:
    stack.rewire(initial_access_keys=stack.access_keys.verification_keys())
    return stack.login()


def _events(stack: Stack, grant: TokenGrant) -> dict[str, dict[str, Any]]:
    filled = {"fingerprint": grant.fingerprint or "", "device_id": "", "session_id": ""}
    return {
        "http": load_event(
            "authorizer/http-sensitive-route.json", access_token=grant.access_token, **filled
        ),
        "rest_request": load_event(
            "authorizer/rest-request-valid.json", access_token=grant.access_token, **filled
        ),
        # A TOKEN authorizer sees no cookie, so its valid case is a token without binding.
        "rest_token": load_event(
            "authorizer/rest-token-valid.json",
            access_token=mint(stack, grant, roles=stack.user.roles),
            **filled,
        ),
    }


CATALOGUE = {
    "http": HTTP_DAMAGES,
    "rest_request": REST_REQUEST_DAMAGES,
    "rest_token": REST_TOKEN_DAMAGES,
}


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_malformed_authorizer_events_are_never_allowed(
    kind: str,
    stack: Stack,
    grant: TokenGrant,
) -> None:
    valid = _events(stack, grant)[kind]
    assert decide(copy.deepcopy(valid)) == "allow"  # the control
    for name, damage in CATALOGUE[kind].items():
        event = copy.deepcopy(valid)
        damage(event)
        subject: object = [] if name == "the event is a list" else event
        verdict = decide(subject)
        record("authorizer_events", f"{kind}: {name}", verdict != "allow")
        assert verdict != "allow", f"{kind}: {name} was allowed"
